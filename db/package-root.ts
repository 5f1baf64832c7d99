/**
 * Where the package's own files are, and where the embedded database's build goes.
 *
 * The package root is the nearest folder above this file holding a `package.json`: the clone
 * (sources under `<root>/db`) or the installed package (compiled under `<root>/dist/db`). The
 * database's sources (`tools/ferretdb`) are found there.
 *
 * The build cache (FerretDB's binary and its patched sources) is `TASKMASTER_CACHE_DIR` if set; in a
 * clone, its own `.cache` (development and CI keep their build beside the sources); in an installed
 * package, the user's cache folder (`$XDG_CACHE_HOME/taskmaster`, else `~/.cache/taskmaster`),
 * because `npm ci` deletes everything under `node_modules` and the build would start over.
 * Nothing a user keeps (the database's data) goes in either: see `defaultDataDir` in db/server.ts.
 */
import os from 'node:os';
import path from 'node:path';
import { packageRoot } from '../common/package-root';

export const PACKAGE_ROOT = packageRoot(__dirname);

/** The package lies inside a `node_modules` folder: an install, which `npm ci` may delete at any time. */
export function isInstalled(root: string = PACKAGE_ROOT): boolean {
  return root.split(path.sep).includes('node_modules');
}

/** The build cache for a package at `root` (see the top of this file). */
export function cacheDir(
  env: NodeJS.ProcessEnv = process.env,
  root: string = PACKAGE_ROOT,
  home: string = os.homedir(),
): string {
  if (env.TASKMASTER_CACHE_DIR) return path.resolve(env.TASKMASTER_CACHE_DIR);
  if (!isInstalled(root)) return path.join(root, '.cache');
  // The XDG base directory rule: a relative XDG_CACHE_HOME is invalid and ignored.
  const xdg = env.XDG_CACHE_HOME;
  return path.join(xdg && path.isAbsolute(xdg) ? xdg : path.join(home, '.cache'), 'taskmaster');
}

export const CACHE_DIR = cacheDir();

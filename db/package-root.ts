/**
 * Where the package's own files are, from a clone (sources under `<root>/db`) or an installed
 * package (compiled under `<root>/dist/db`): the nearest folder above this file holding a
 * `package.json`. The embedded database's sources (`tools/ferretdb`) and its build cache (`.cache`)
 * are found from there; `TASKMASTER_CACHE_DIR` moves the cache elsewhere.
 */
import fs from 'node:fs';
import path from 'node:path';

function findRoot(from: string): string {
  for (let dir = from; ; dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, 'package.json'))) return dir;
    if (path.dirname(dir) === dir) return path.resolve(from, '..');
  }
}

export const PACKAGE_ROOT = findRoot(__dirname);
export const CACHE_DIR = process.env.TASKMASTER_CACHE_DIR
  ? path.resolve(process.env.TASKMASTER_CACHE_DIR)
  : path.join(PACKAGE_ROOT, '.cache');

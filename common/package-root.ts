/**
 * The package's own folder and manifest: the nearest folder holding a `package.json` above this file
 * (`common/` in a source checkout, `dist/common/` in the installed package). The master serves the
 * dashboard from it, the embedded database is built from its `tools/`, and the CLI reads its name.
 */
import fs from 'node:fs';
import path from 'node:path';

export function packageRoot(from: string = __dirname): string {
  for (let dir = from; ; dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, 'package.json'))) return dir;
    if (path.dirname(dir) === dir) throw new Error(`no package.json above ${from}`);
  }
}

export function packageName(): string {
  const pkg = JSON.parse(fs.readFileSync(path.join(packageRoot(), 'package.json'), 'utf8')) as {
    name: string;
  };
  return pkg.name;
}

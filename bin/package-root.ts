/**
 * The package's own folder and manifest, found from this file: `bin/` in a source checkout, `dist/bin/`
 * in the installed package.
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

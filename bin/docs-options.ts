/**
 * `npm run docs:options`: rewrites the master's options in docs/configuration.md from their
 * declarations (master/options-table.ts), between its two marker comments. test/unit/options.test.ts
 * fails while the file and the declarations disagree.
 */
import fs from 'node:fs';
import path from 'node:path';
import { withOptionsSection } from '../master/options-table';

const file = path.join(__dirname, '..', 'docs', 'configuration.md');
const before = fs.readFileSync(file, 'utf8');
const after = withOptionsSection(before);
if (after === before) process.stdout.write('docs/configuration.md: the options are up to date\n');
else {
  fs.writeFileSync(file, after);
  process.stdout.write('docs/configuration.md: the options were rewritten\n');
}

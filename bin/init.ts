/**
 * `taskmaster init [DIR]`: writes a tasks folder to start from — one task module in TypeScript, typed
 * with `defineTask`, and a batch file that uses it — and says how to run them. It never overwrites:
 * if either file exists, nothing is written.
 */
import fs from 'node:fs';
import path from 'node:path';
import { packageName } from '../common/package-root';

const MODULE = (
  pkg: string,
) => `// A task module: the task's params are the function's arguments, \`this\` is the task context
// (this.progress, this.log, this.signal, this.attempt, …). Return the result, or throw.
import { defineTask } from '${pkg}/task';

export default defineTask(async function greet(name: string, times = 1) {
  this.log.info(\`greeting \${name}\`);
  const lines: string[] = [];
  for (let i = 1; i <= times; i++) {
    if (this.signal.aborted) throw this.signal.reason;
    lines.push(\`Hello, \${name}!\`);
    this.progress(i / times); // a fraction from 0 to 1
  }
  return { greeting: lines.join(' '), attempt: this.attempt };
});
`;

// Ids are local to the file: \`taskmaster feed\` stores them per batch, so it can be fed again and again.
const BATCH = `[
  { "id": "greet-world", "module": "greet", "params": ["world"] },
  { "id": "greet-twice", "module": "greet", "params": ["again", 2], "dependencies": ["greet-world"] }
]
`;

export function initTasks(
  dir: string,
  out: NodeJS.WritableStream = process.stdout,
  err: NodeJS.WritableStream = process.stderr,
): number {
  const files = [
    { file: path.join(dir, 'greet.ts'), text: MODULE(packageName()) },
    { file: path.join(dir, 'batch.json'), text: BATCH },
  ];
  const taken = files.filter((f) => fs.existsSync(f.file));
  if (taken.length > 0) {
    err.write(
      `taskmaster init: ${taken.map((f) => f.file).join(' and ')} already exist${taken.length === 1 ? 's' : ''}; nothing was written\n`,
    );
    return 1;
  }
  fs.mkdirSync(dir, { recursive: true });
  // `wx` fails rather than overwrite a file created since the check.
  for (const f of files) fs.writeFileSync(f.file, f.text, { flag: 'wx' });
  out.write(
    [
      `wrote ${files.map((f) => f.file).join(' and ')}`,
      'next, with a master running (npx taskmaster master):',
      `  npx taskmaster runner --tasks ${dir}`,
      `  npx taskmaster feed ${path.join(dir, 'batch.json')} --wait`,
      '',
    ].join('\n'),
  );
  return 0;
}

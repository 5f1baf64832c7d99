/**
 * The README and docs/ run. Their code blocks marked ```ts runnable (feeder scripts) and ```ts task /
 * ```js task (task modules) are written out under the paths their first line names (`// tasks/greet.ts`), beside
 * the tasks folder `taskmaster init` writes, with `taskmaster-distributed` resolving to this checkout;
 * then they are type-checked with the project's compiler options, and each runnable one is run as
 * the README says (`npx tsx feed.ts`) against a real master and a runner on that folder only: what a
 * newcomer has after the Install section. A snippet that does not compile, names a module that folder
 * lacks, fails, or does not exit by itself (e.g. without `feeder.close()`) fails this test.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { promisify } from 'node:util';
import ts from 'typescript';
import { initTasks } from '../../bin/init';
import { ROOT, tempDir } from '../helpers/cluster';
import { testDbName } from '../helpers/db';
import { docFiles, readDoc, readmeSnippets } from '../helpers/docs';
import { useCluster } from '../helpers/use-cluster';

const run = promisify(execFile);

/** `taskmaster-distributed` (and its `/task` entry) as a package in `dir`, pointing at this checkout. */
function linkPackage(dir: string): void {
  const pkg = path.join(dir, 'node_modules', 'taskmaster-distributed');
  fs.mkdirSync(pkg, { recursive: true });
  const entries = { index: path.join(ROOT, 'index'), task: path.join(ROOT, 'runner', 'define-task') };
  for (const [name, target] of Object.entries(entries)) {
    // Runs through tsx's hook, which the runner's children and run-ts.js register.
    fs.writeFileSync(
      path.join(pkg, `${name}.js`),
      `module.exports = require(${JSON.stringify(`${target}.ts`)});\n`,
    );
    fs.writeFileSync(path.join(pkg, `${name}.d.ts`), `export * from ${JSON.stringify(target)};\n`);
  }
  fs.writeFileSync(
    path.join(pkg, 'package.json'),
    JSON.stringify({
      name: 'taskmaster-distributed',
      exports: {
        '.': { types: './index.d.ts', default: './index.js' },
        './task': { types: './task.d.ts', default: './task.js' },
      },
    }),
  );
}

const README = readDoc('README.md');

describe('the README and docs/ run', () => {
  const snippets = docFiles().flatMap((file) => readmeSnippets(readDoc(file)));
  const dir = tempDir('readme');

  beforeAll(() => {
    linkPackage(dir);
    const quiet = new PassThrough().resume();
    expect(initTasks(path.join(dir, 'tasks'), quiet, quiet)).toBe(0);
    for (const s of snippets) {
      fs.mkdirSync(path.dirname(path.join(dir, s.file)), { recursive: true });
      fs.writeFileSync(path.join(dir, s.file), s.code);
    }
  });
  const c = useCluster({
    dbName: testDbName('readme-snippets'),
    runners: [{ tasks: [path.join(dir, 'tasks')], workers: 1, slots: 4 }],
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('they have runnable feeder scripts and task modules, each named by its first line', () => {
    expect(readmeSnippets(README).filter((s) => s.kind === 'runnable').length).toBeGreaterThanOrEqual(2);
    expect(snippets.filter((s) => s.kind === 'task').length).toBeGreaterThanOrEqual(3);
  });

  test('its TypeScript snippets type-check with the project compiler options', () => {
    const config = ts.readConfigFile(path.join(ROOT, 'tsconfig.json'), ts.sys.readFile);
    const { options } = ts.parseJsonConfigFileContent(config.config, ts.sys, ROOT);
    const files = snippets.filter((s) => s.file.endsWith('.ts')).map((s) => path.join(dir, s.file));
    const program = ts.createProgram(files, {
      ...options,
      noEmit: true,
      types: ['node'],
      typeRoots: [path.join(ROOT, 'node_modules', '@types')],
    });
    const errors = ts
      .getPreEmitDiagnostics(program)
      .filter((d) => d.file && d.file.fileName.startsWith(dir))
      .map(
        (d) =>
          `${path.relative(dir, d.file!.fileName)}: ${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`,
      );
    expect(errors).toEqual([]);
  });

  test('each runnable snippet runs with tsx, as the README says, to completion against a real master, and exits by itself', async () => {
    expect(README).toContain('`npx tsx feed.ts`');
    // What `npx tsx` runs: the tsx the package depends on.
    const tsx = path.join(ROOT, 'node_modules', '.bin', 'tsx');
    for (const s of snippets.filter((x) => x.kind === 'runnable')) {
      const result = await run(tsx, [s.file], {
        cwd: dir,
        env: { ...process.env, TASKMASTER_MASTER: c.url },
        timeout: 30_000,
        encoding: 'utf8',
      }).catch((e: Error & { stdout?: string; stderr?: string; signal?: string }) => {
        throw new Error(
          `README snippet ${s.file} failed (${e.signal ?? e.message}):\n${e.stdout}\n${e.stderr}`,
        );
      });
      expect(result.stdout).toMatch(/done/);
    }
  });
});

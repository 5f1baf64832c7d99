import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ModuleLoader } from '../../runner/loader';
import { capturingLogger } from '../helpers/capture';

const FIXTURES = path.resolve(__dirname, '..', 'fixtures', 'tasks');

function tempDir(label: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `taskmaster-loader-${label}-`));
}

describe('runner module loader', () => {
  const made: string[] = [];
  const loaders: ModuleLoader[] = [];
  const dir = (label: string) => {
    const d = tempDir(label);
    made.push(d);
    return d;
  };
  const loader = async (dirs: string[], watch = false) => {
    const { logger, lines } = capturingLogger();
    const l = new ModuleLoader({ dirs, watch, logger });
    loaders.push(l);
    await l.start();
    return { l, lines };
  };

  afterAll(async () => {
    for (const l of loaders) await l.close();
    for (const d of made) fs.rmSync(d, { recursive: true, force: true });
  });

  test('resolves names without extension to .js, .cjs, .mjs or .ts, in folders and subfolders', async () => {
    const { l } = await loader([FIXTURES]);
    expect((await l.resolve('ok')).path).toBe(path.join(FIXTURES, 'ok.js'));
    expect((await l.resolve('ts-task')).path).toBe(path.join(FIXTURES, 'ts-task.ts'));
    expect((await l.resolve('esm-task')).path).toBe(path.join(FIXTURES, 'esm-task.mjs'));
    expect((await l.resolve('sub/nested')).path).toBe(path.join(FIXTURES, 'sub', 'nested.js'));
    expect((await l.resolve('ok.js')).path).toBe(path.join(FIXTURES, 'ok.js'));
    // Types stripped and ESM turned into CommonJS, ready for the child's Module#_compile.
    const ts = await l.resolve('ts-task');
    expect(ts.code).not.toMatch(/interface Pair/);
    const esm = await l.resolve('esm-task');
    expect(esm.code).not.toMatch(/^export /m);
    expect(esm.code).toMatch(/module\.exports/);
  });

  test('searches the task folders in order: the first folder holding the name wins', async () => {
    const a = dir('a');
    const b = dir('b');
    fs.writeFileSync(path.join(a, 'both.js'), 'module.exports = () => "a";');
    fs.writeFileSync(path.join(b, 'both.js'), 'module.exports = () => "b";');
    fs.writeFileSync(path.join(b, 'only-b.ts'), 'export default () => "b";');
    const { l } = await loader([a, b]);
    expect((await l.resolve('both')).path).toBe(path.join(fs.realpathSync(a), 'both.js'));
    expect((await l.resolve('only-b')).path).toBe(path.join(fs.realpathSync(b), 'only-b.ts'));
    expect(l.modules().map((m) => m.name)).toEqual(['both', 'only-b']);
  });

  test('refuses path traversal, absolute paths and missing modules with an unrecoverable EMODULE', async () => {
    const { l } = await loader([FIXTURES]);
    for (const name of ['../fixtures/tasks/ok', 'sub/../../ok', '/etc/passwd', '', 'nope']) {
      await expect(l.resolve(name)).rejects.toMatchObject({ code: 'EMODULE', unrecoverable: true });
    }
  });

  test('refuses traversal names whose targets exist outside the task folder, and loads nothing from there', async () => {
    const root = dir('traversal');
    const tasks = path.join(root, 'tasks');
    fs.mkdirSync(path.join(tasks, 'sub'), { recursive: true });
    fs.mkdirSync(path.join(root, 'other'));
    fs.writeFileSync(path.join(root, 'secret.js'), 'module.exports = () => "outside";');
    fs.writeFileSync(path.join(root, 'other', 'x.js'), 'module.exports = () => "outside too";');
    fs.writeFileSync(path.join(tasks, 'sub', 'inner.js'), 'module.exports = () => "inside";');
    const { l } = await loader([tasks]);
    // Each of these names a file that is there: only the loader's checks stand in the way.
    for (const name of [
      '../secret',
      'sub/../../secret',
      '../other/x',
      'sub/../../other/x.js',
      '..//secret',
    ]) {
      await expect(l.resolve(name)).rejects.toMatchObject({ code: 'EMODULE', unrecoverable: true });
    }
    expect((await l.resolve('sub/inner')).path).toBe(path.join(fs.realpathSync(tasks), 'sub', 'inner.js'));
    expect(l.modules().map((m) => m.name)).toEqual(['sub/inner']);
  });

  test('refuses a symlink that leads outside its task folder, but follows one that stays inside', async () => {
    const tasks = dir('tasks');
    const outside = dir('outside');
    fs.writeFileSync(path.join(outside, 'secret.js'), 'module.exports = () => "outside";');
    fs.symlinkSync(path.join(outside, 'secret.js'), path.join(tasks, 'sneaky.js'));
    fs.symlinkSync(outside, path.join(tasks, 'linked-dir'));
    fs.writeFileSync(path.join(tasks, 'real.js'), 'module.exports = () => "inside";');
    fs.symlinkSync(path.join(tasks, 'real.js'), path.join(tasks, 'alias.js'));
    const { l } = await loader([tasks]);
    await expect(l.resolve('sneaky')).rejects.toMatchObject({
      code: 'EMODULE',
      message: expect.stringContaining('outside'),
    });
    await expect(l.resolve('linked-dir/secret')).rejects.toMatchObject({ code: 'EMODULE' });
    expect((await l.resolve('alias')).path).toBe(path.join(fs.realpathSync(tasks), 'real.js'));
    // Nothing outside is announced to the master either.
    expect(l.modules().map((m) => m.name)).toEqual(['alias', 'real']);
  });

  test('the hash follows the content: an edit changes it, rewriting the same bytes does not', async () => {
    const tasks = dir('hash');
    const file = path.join(tasks, 'm.js');
    fs.writeFileSync(file, 'module.exports = () => 1;');
    const { l } = await loader([tasks]);
    const v1 = await l.resolve('m');
    expect(v1.hash).toMatch(/^[0-9a-f]{16}$/);
    // Same size, right after the previous read: the stat check must still notice the edit.
    fs.writeFileSync(file, 'module.exports = () => 2;');
    const v2 = await l.resolve('m');
    expect(v2.hash).not.toBe(v1.hash);
    expect(v2.code).toContain('2');
    fs.writeFileSync(file, 'module.exports = () => 2;');
    expect((await l.resolve('m')).hash).toBe(v2.hash);
  });

  test('a half-written edit keeps the previous good version; the fixed file is picked up', async () => {
    const tasks = dir('broken');
    const file = path.join(tasks, 'm.js');
    fs.writeFileSync(file, 'module.exports = function () { return "good"; };');
    const { l, lines } = await loader([tasks]);
    const good = await l.resolve('m');
    fs.writeFileSync(file, 'module.exports = function () { return "go');
    const during = await l.resolve('m');
    expect(during.hash).toBe(good.hash);
    expect(during.code).toBe(good.code);
    expect(lines).toContainEqual(
      expect.objectContaining({
        level: 'error',
        message: expect.stringContaining('keeping the previous version'),
        kept: good.hash,
      }),
    );
    fs.writeFileSync(file, 'module.exports = function () { return "better"; };');
    const fixed = await l.resolve('m');
    expect(fixed.hash).not.toBe(good.hash);
    expect(fixed.code).toContain('better');
  });

  test('a module that never compiled fails with EMODULE and the compiler message', async () => {
    const tasks = dir('never');
    fs.writeFileSync(path.join(tasks, 'bad.ts'), 'export default function (: number {');
    const { l } = await loader([tasks]);
    await expect(l.resolve('bad')).rejects.toMatchObject({
      code: 'EMODULE',
      unrecoverable: true,
      message: expect.stringContaining('does not compile'),
    });
    expect(l.modules()).toEqual([]);
  });

  test('ESM top-level await is refused at compile time (the CommonJS transform cannot express it)', async () => {
    const tasks = dir('tla');
    fs.writeFileSync(
      path.join(tasks, 'tla.mjs'),
      'const x = await Promise.resolve(1);\nexport default () => x;\n',
    );
    const { l } = await loader([tasks]);
    await expect(l.resolve('tla')).rejects.toMatchObject({
      code: 'EMODULE',
      message: expect.stringMatching(/await/i),
    });
  });

  test('watching: an added or edited module is announced with its new hash', async () => {
    const tasks = dir('watch');
    fs.writeFileSync(path.join(tasks, 'first.js'), 'module.exports = () => 1;');
    const { l } = await loader([tasks], true);
    expect(l.modules().map((m) => m.name)).toEqual(['first']);
    const before = l.modules()[0].hash;

    const added = new Promise((resolve) => l.once('modules', resolve));
    fs.mkdirSync(path.join(tasks, 'deep'));
    fs.writeFileSync(path.join(tasks, 'deep', 'second.ts'), 'export default (): number => 2;');
    expect(await added).toEqual([
      { name: 'deep/second', hash: expect.any(String) },
      { name: 'first', hash: before },
    ]);

    const edited = new Promise((resolve) => l.once('modules', resolve));
    fs.writeFileSync(path.join(tasks, 'first.js'), 'module.exports = () => "one";');
    const list = (await edited) as { name: string; hash: string }[];
    expect(list.find((m) => m.name === 'first')?.hash).not.toBe(before);
  });
});

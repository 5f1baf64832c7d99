import fs from 'node:fs';
import path from 'node:path';
import { tempDir } from '../helpers/cluster';
import { testDbName } from '../helpers/db';
import { useCluster } from '../helpers/use-cluster';

describe('task modules on a runner', () => {
  const tasksDir = tempDir('tasks');
  const outside = tempDir('outside');

  // Before the cluster's start: the runner announces the modules it finds.
  beforeAll(() => {
    fs.writeFileSync(
      path.join(tasksDir, 'hot.js'),
      'module.exports = function () { return { version: 1, pid: process.pid }; };\n',
    );
    fs.writeFileSync(
      path.join(outside, 'secret.js'),
      'module.exports = function () { return "outside code ran"; };\n',
    );
    fs.symlinkSync(path.join(outside, 'secret.js'), path.join(tasksDir, 'sneaky.js'));
  });
  const c = useCluster({
    dbName: testDbName('modules'),
    runners: [{ tasks: [tasksDir], workers: 1, slots: 1 }],
    feeder: true,
  });
  afterAll(() => {
    fs.rmSync(tasksDir, { recursive: true, force: true });
    fs.rmSync(outside, { recursive: true, force: true });
  });

  test('a module edited between two tasks: the second uses the new code, without restarting anything', async () => {
    const [first] = await c.feeder.work([{ module: 'hot' }]);
    expect(first.result).toMatchObject({ version: 1 });
    fs.writeFileSync(
      path.join(tasksDir, 'hot.js'),
      'module.exports = function () { return { version: 2, pid: process.pid }; };\n',
    );
    const [second] = await c.feeder.work([{ module: 'hot' }]);
    expect(second.result).toMatchObject({ version: 2 });
    // Each outcome names the module version that produced it.
    expect(first.moduleHash).toMatch(/^[0-9a-f]+$/);
    expect(second.moduleHash).toMatch(/^[0-9a-f]+$/);
    expect(second.moduleHash).not.toBe(first.moduleHash);
    expect((second.result as { pid: number }).pid).toBe((first.result as { pid: number }).pid);
  });

  test('a module added while the runner runs is used by the next task that names it', async () => {
    fs.mkdirSync(path.join(tasksDir, 'late'), { recursive: true });
    fs.writeFileSync(
      path.join(tasksDir, 'late', 'arrival.ts'),
      'export default function (a: number, b: number): number { return a * b; }\n',
    );
    const [o] = await c.feeder.work([{ module: 'late/arrival', params: [6, 7] }]);
    expect(o).toMatchObject({ state: 'done', result: 42 });
  });

  test('a symlink that leads out of the task folder is not announced, so its task never runs', async () => {
    const [o] = await c.feeder.work([{ module: 'sneaky', assignTimeout: 300 }]);
    expect(o).toMatchObject({ state: 'failed', attempts: 0, error: { code: 'EATO' } });
    expect(o.error?.message).toContain('no connected runner has module sneaky');
  });

  test('path traversal in a module name is refused by the master before anything is stored', async () => {
    const before = c.master.scheduler.stats.added;
    for (const name of ['../secret', 'a/../../secret', '/etc/passwd', 'a\\b', 'C:/x', '.hidden']) {
      await expect(c.feeder.add([{ module: name }])).rejects.toMatchObject({ code: 'EVALIDATION' });
    }
    expect(c.master.scheduler.stats.added).toBe(before);
  });

  test('a module that is missing everywhere: its task waits, and says so when its assign timeout ends it', async () => {
    const [o] = await c.feeder.work([{ module: 'does-not-exist', assignTimeout: 300 }]);
    expect(o).toMatchObject({ state: 'failed', attempts: 0, error: { code: 'EATO' } });
    expect(o.error?.message).toBe(
      'no runner took the task within 300 ms: no connected runner has module does-not-exist',
    );
  });
});

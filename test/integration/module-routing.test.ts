/**
 * Module routing with two real runners: `has-greet` has the `greet` module, `no-greet` does not. A
 * task goes only to a runner that announced its module; an EMODULE is the reporting runner's problem
 * (the task is retried elsewhere, uncounted), and a task no connected runner can run waits, saying why.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { AttemptResult } from '../../protocol/schemas';
import type { Runner } from '../../runner/runner';
import { capturingLogger } from '../helpers/capture';
import { FIXTURES, ROOT, tempDir } from '../helpers/cluster';
import { eventually, waitForEvent } from '../helpers/wait';
import { useCluster } from '../helpers/use-cluster';

const GREET = path.join(ROOT, 'test', 'fixtures', 'greet');

describe('module routing', () => {
  const shared = tempDir('shared-tasks');
  const log = capturingLogger();
  let withGreet: Runner;
  /** Every result each runner reported, by runner id. */
  const reported = new Map<string, AttemptResult[]>();

  const track = (r: Runner) => {
    reported.set(r.runnerId, reported.get(r.runnerId) ?? []);
    r.on('result', (res) => reported.get(r.runnerId)?.push(res));
    return r;
  };
  const why = async (id: string) => {
    const res = await fetch(`${c.url}/api/tasks/${id}/why`);
    return (await res.json()) as { code: string; message: string };
  };

  beforeAll(() => {
    // Compiles, so both runners announce it, but throws when a child loads it: EMODULE everywhere.
    fs.writeFileSync(
      path.join(shared, 'fragile.js'),
      "throw new Error('fragile: no config');\nmodule.exports = function () { return 'v1'; };\n",
    );
  });
  const c = useCluster({
    masterOptions: { logger: log.logger },
    runners: [
      { runnerId: 'has-greet', tasks: [GREET, shared], slots: 5 },
      { runnerId: 'no-greet', tasks: [FIXTURES, shared], slots: 5 },
    ],
    feeder: true,
  });
  beforeAll(() => {
    c.runners.forEach(track);
    withGreet = c.runners[0];
  });
  afterAll(() => fs.rmSync(shared, { recursive: true, force: true }));

  test('20 greet tasks all run on the runner that has the module, none fails with EMODULE', async () => {
    const outcomes = await c.feeder.work(
      Array.from({ length: 20 }, (_, i) => ({ module: 'greet', params: [`n${i}`] })),
    );
    expect(outcomes.map((o) => o.state)).toEqual(Array(20).fill('done'));
    expect(outcomes.map((o) => o.attempts)).toEqual(Array(20).fill(1));
    expect(outcomes[7].result).toBe('Hello, n7!');
    expect(reported.get('has-greet')?.filter((r) => r.ok)).toHaveLength(20);
    expect(reported.get('no-greet')).toEqual([]);
    // Named with its extension, it is the same module.
    const [dotted] = await c.feeder.work([{ module: 'greet.js', params: ['dot'] }]);
    expect(dotted).toMatchObject({ state: 'done', result: 'Hello, dot!', attempts: 1 });
    expect(reported.get('no-greet')).toEqual([]);
  });

  test('with only the runner without it connected, a greet task waits and why says so', async () => {
    const down = waitForEvent(c.master, 'runner:down', (id) => id === 'has-greet');
    await withGreet.close();
    await down;
    const added = await c.feeder.addBatch([{ id: 'greet-late', module: 'greet', params: ['late'] }]);
    expect(added.warnings).toEqual(['1 task of this add wait: no connected runner has module greet']);
    expect(await why('greet-late')).toEqual({
      task: 'greet-late',
      code: 'NO_MODULE',
      message: 'no connected runner has module greet',
    });
    const status = await eventually(async () => {
      const s = (await (await fetch(`${c.url}/api/status`)).json()) as {
        waitingForModules: unknown[];
      };
      return s.waitingForModules.length > 0 ? s : null;
    });
    expect(status.waitingForModules).toEqual([
      { module: 'greet', tasks: 1, why: 'no connected runner has module greet' },
    ]);
    expect(log.lines).toContainEqual(
      expect.objectContaining({
        message: 'tasks wait: no connected runner has module greet',
        module: 'greet',
      }),
    );
    const cli = await new Promise<string>((resolve, reject) =>
      execFile(
        process.execPath,
        [path.join(ROOT, 'bin', 'taskmaster.js'), 'status', '--master', c.url],
        { timeout: 60_000 },
        (err, stdout) => (err ? reject(err) : resolve(stdout)),
      ),
    );
    expect(cli).toContain('\n1 task wait: no connected runner has module greet\n');
    // The runner that has it comes back: the task runs there.
    withGreet = track(await c.startRunner({ runnerId: 'has-greet', tasks: [GREET, shared], slots: 5 }));
    expect(await c.feeder.outcome('greet-late')).toMatchObject({ state: 'done', result: 'Hello, late!' });
    expect(reported.get('no-greet')).toEqual([]);
  });

  test('a module that fails to load everywhere: one EMODULE per runner, then it waits until a new version', async () => {
    await c.feeder.add([{ id: 'frail', module: 'fragile', maxAttempts: 1 }]);
    const blocked = await eventually(async () => {
      const w = await why('frail');
      return w.code === 'NO_MODULE' ? w : null;
    });
    expect(blocked.message).toMatch(
      /^no connected runner can load module fragile: (has-greet, no-greet|no-greet, has-greet) reported EMODULE/,
    );
    const emodules = (id: string) =>
      (reported.get(id) ?? []).filter((r) => r.id === 'frail' && !r.ok && r.error.code === 'EMODULE');
    expect([emodules('has-greet').length, emodules('no-greet').length]).toEqual([1, 1]);
    // Not counted against its single attempt: it is still open, waiting.
    expect(c.master.scheduler.tasks.get('frail')).toMatchObject({
      state: 'ready',
      attempts: 2,
      uncounted: 2,
    });
    expect(log.lines).toContainEqual(
      expect.objectContaining({ message: `tasks wait: ${blocked.message}`, module: 'fragile' }),
    );
    // Fixed: the runners announce the new version, and the task runs.
    fs.writeFileSync(path.join(shared, 'fragile.js'), "module.exports = function () { return 'v2'; };\n");
    expect(await c.feeder.outcome('frail')).toMatchObject({ state: 'done', result: 'v2', attempts: 3 });
  });
});

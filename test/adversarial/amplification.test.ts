/**
 * One small, legal input the master multiplies: an error message repeated along a dependency chain
 * or copied into each of thousands of dependents. The master runs as its own process, so its memory
 * is its own; each test drives the shape hard, then checks the bound, that every outcome arrived
 * once, and that the master is alive and useful.
 */
import type { TaskOutcome } from '../../protocol/schemas';
import { MAX_ERROR_MESSAGE_CHARS } from '../../protocol/limits';
import type { Runner } from '../../runner/runner';
import { startFeeder, startRunner, type TestFeeder } from '../helpers/clients';
import { spawnMaster, type MasterProcess } from '../helpers/cluster';
import { testDbName } from '../helpers/db';
import { nextEvent } from '../helpers/wait';
import { assertMasterAlive } from './cluster';

const size = (o: TaskOutcome) => Buffer.byteLength(JSON.stringify(o));

describe('adversarial: amplification', () => {
  let master: MasterProcess;
  let runner: Runner;
  let feeder: TestFeeder;
  let disconnects = 0;

  beforeAll(async () => {
    master = await spawnMaster(testDbName(__filename));
    runner = await startRunner(master.url, { workers: 2, slots: 4, runnerId: 'amp' });
    feeder = await startFeeder(master.url, { waitMs: 120_000 });
    feeder.on('disconnect', () => disconnects++);
  });
  afterAll(async () => {
    await feeder?.close();
    await runner?.close();
    await master?.kill('SIGKILL');
  });

  test('a 2,000-task chain whose root is cancelled: each outcome under 1 KB, each delivered once, master peak RSS under 300 MB', async () => {
    const n = 2000;
    const chain = Array.from({ length: n }, (_, i) =>
      i === 0
        ? { id: 'chain-0', module: 'slow', params: [120_000] }
        : { id: `chain-${i}`, module: 'ok', dependencies: [`chain-${i - 1}`] },
    );
    const delivered = new Map<string, number>();
    const onResult = (o: TaskOutcome) => delivered.set(o.id, (delivered.get(o.id) ?? 0) + 1);
    feeder.on('result', onResult);
    const started = nextEvent(runner, 'started');
    await feeder.add(chain);
    await started;
    expect(await feeder.cancel(['chain-0'])).toEqual(['chain-0']);
    const outcomes = await feeder.wait(chain.map((t) => t.id));
    feeder.off('result', onResult);

    expect(outcomes[0]).toMatchObject({ state: 'cancelled', error: { code: 'ECANCELLED' } });
    expect(outcomes.slice(1).every((o) => o.state === 'failed' && o.error?.code === 'EDEPFAILED')).toBe(true);
    // The last one names the root cause, not the 1,998 messages in between.
    expect(outcomes[n - 1].error?.message).toMatch(
      /^dependency "chain-1998" failed \(root cause: ECANCELLED of task "chain-0": cancelled by/,
    );
    expect(outcomes[n - 1].error?.details).toMatchObject({ root: { id: 'chain-0', code: 'ECANCELLED' } });
    const sizes = outcomes.map(size);
    expect(Math.max(...sizes)).toBeLessThan(1024);
    expect([...delivered.values()].every((k) => k === 1) && delivered.size === n).toBe(true);
    expect(disconnects).toBe(0);
    expect(master.memory().peakMb).toBeLessThan(300);
    await assertMasterAlive(master.url);
  });

  test('an 800 KB error with 1,000 dependents, then 2,500 more added after it failed: each dependent outcome under 1 KB, master peak RSS under 300 MB', async () => {
    const before = Array.from({ length: 1000 }, (_, i) => ({
      id: `fan-${i}`,
      module: 'ok',
      dependencies: ['fan-root'],
    }));
    const [root] = await feeder.work([
      { id: 'fan-root', module: 'throws-big', params: [800 * 1024], maxAttempts: 1 },
      ...before,
    ]);
    expect(root).toMatchObject({ state: 'failed', error: { code: 'ETASK' } });
    // The error itself is cut to the limit, with a marker saying how much was left out.
    expect(root.error?.message).toHaveLength(MAX_ERROR_MESSAGE_CHARS);
    expect(root.error?.message).toMatch(/ … \[truncated: \d+ more characters\]$/);
    const early = await feeder.wait(before.map((t) => t.id));
    const after = await feeder.work(
      Array.from({ length: 2500 }, (_, i) => ({ id: `late-${i}`, module: 'ok', dependencies: ['fan-root'] })),
    );
    for (const o of [...early, ...after]) {
      expect(o).toMatchObject({ state: 'failed', error: { code: 'EDEPFAILED' } });
      expect(size(o)).toBeLessThan(1024);
    }
    expect(disconnects).toBe(0);
    expect(master.memory().peakMb).toBeLessThan(300);
    await assertMasterAlive(master.url);
  });

  test('an error larger than a message (3 MB) ends as a failed outcome with its message cut: the runner stays connected', async () => {
    let runnerDown = 0;
    runner.on('disconnect', () => runnerDown++);
    const [o] = await feeder.work([{ module: 'throws-big', params: [3 * 1024 * 1024], runner: 'amp' }]);
    expect(o).toMatchObject({ state: 'failed', error: { code: 'ETASK' } });
    expect(o.error?.message.length).toBe(MAX_ERROR_MESSAGE_CHARS);
    expect(runnerDown).toBe(0);
    await assertMasterAlive(master.url);
  });
});

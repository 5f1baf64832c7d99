import type { Feeder } from '../../feeder/feeder';
import type { Master } from '../../master/master';
import type { TaskInput } from '../../protocol/schemas';
import type { Runner } from '../../runner/runner';
import { startFeeder, startRunner } from '../helpers/clients';
import { startMaster } from '../helpers/cluster';
import { waitForEvent } from '../helpers/wait';
import { testDbName } from '../helpers/db';

/**
 * Groups, timeouts, cancel, system messages and the bounded queue, through the Feeder library and a
 * real runner. Each test has a cluster of its own: a child still being killed for one test's timeout
 * cannot slow the next one down.
 */
describe('feeder groups and flow control', () => {
  let master: Master;
  let runner: Runner;
  let feeder: Feeder;

  beforeEach(async () => {
    master = await startMaster(testDbName('groups'), { queueLimit: 30 });
    runner = await startRunner(master.url, { workers: 2, slots: 4, runnerId: 'group-runner' });
    feeder = await startFeeder(master.url);
  });
  afterEach(async () => {
    await feeder?.close();
    await runner?.close();
    await master?.close();
  });

  test('group options apply to every task that does not set its own: timeout → ECSTO, runTimeout → ETO', async () => {
    const outcomes = await feeder.work(
      [
        { id: 'g-slow', module: 'slow', params: [10_000] },
        { id: 'g-loop', module: 'cpu-loop', runTimeout: 300, maxAttempts: 1 },
        { id: 'g-quick', module: 'ok', params: ['fine'], timeout: 20_000 },
      ],
      { timeout: 800, maxAttempts: 1 },
    );
    expect(outcomes.map((o) => [o.id, o.state, o.error?.code ?? null])).toEqual([
      ['g-slow', 'failed', 'ECSTO'],
      ['g-loop', 'failed', 'ETO'],
      ['g-quick', 'done', null],
    ]);
  });

  test('workIndividual reports each task as it finishes, then the group in input order', async () => {
    const seen: string[] = [];
    const all = await feeder.workIndividual(
      [
        { id: 'wi-late', module: 'timed', params: [300, 'late'] },
        { id: 'wi-early', module: 'timed', params: [0, 'early'] },
      ],
      {},
      (o) => seen.push(o.id),
    );
    expect(seen).toEqual(['wi-early', 'wi-late']);
    expect(all.map((o) => o.id)).toEqual(['wi-late', 'wi-early']);
  });

  test('cancel aborts a running attempt, marks it cancelled and fails its dependents', async () => {
    const started = waitForEvent(master, 'task:started', (_rid: unknown, refs: unknown) =>
      (refs as { id: string }[]).some((r) => r.id === 'c-long'),
    );
    const done = feeder.work([
      { id: 'c-long', module: 'slow', params: [30_000] },
      { id: 'c-after', module: 'ok', dependencies: ['c-long'] },
    ]);
    await started;
    expect(await feeder.cancel('c-long')).toEqual(['c-long']);
    const [long, after] = await done;
    expect(long).toMatchObject({ state: 'cancelled', error: { code: 'ECANCELLED' } });
    expect(after).toMatchObject({ state: 'failed', error: { code: 'EDEPFAILED' } });
  });

  test('system messages: a feeder reaches one runner, and a runner reaches everybody', async () => {
    const atRunner = waitForEvent<[unknown, string]>(runner, 'sysmsg');
    expect(await feeder.systemMessage({ reload: 'prices' }, { to: 'group-runner' })).toEqual({
      delivered: 1,
      missed: 0,
    });
    expect((await atRunner)[0]).toEqual({ reload: 'prices' });
    const atFeeder = waitForEvent<[unknown, string]>(feeder, 'sysmsg');
    const atMaster = waitForEvent<[unknown, string]>(master, 'sysmsg');
    await runner.systemMessage('hello all', null);
    expect((await atFeeder)[0]).toBe('hello all');
    expect((await atMaster)[0]).toBe('hello all');
  });

  test('under a flood the queue stays bounded, refused adds are retried, and an honest feeder gets through', async () => {
    const limit = 30;
    let maxQueued = 0;
    const add = master.scheduler.add.bind(master.scheduler);
    master.scheduler.add = async (...args: Parameters<typeof add>) => {
      const reply = await add(...args);
      maxQueued = Math.max(maxQueued, master.scheduler.queuedCount());
      return reply;
    };
    let waits = 0;
    const flood = Array.from({ length: 12 }, (_, b) =>
      feeder.work(
        Array.from({ length: 10 }, (_, i): TaskInput => ({
          id: `flood-${b}-${i}`,
          module: 'timed',
          params: [5, b],
        })),
        { onQueueFull: () => void waits++ },
      ),
    );
    const honest = await startFeeder(master.url);
    try {
      const mine = await honest.work([{ id: 'honest', module: 'ok', params: ['through'] }]);
      expect(mine[0]).toMatchObject({ state: 'done', result: ['through'] });
      const results = (await Promise.all(flood)).flat();
      expect(results).toHaveLength(120);
      expect(results.every((o) => o.state === 'done')).toBe(true);
      expect(waits).toBeGreaterThan(0); // the flood did hit the limit
      expect(maxQueued).toBeLessThanOrEqual(limit);
    } finally {
      master.scheduler.add = add;
      await honest.close();
    }
  });
});

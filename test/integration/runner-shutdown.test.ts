import type { TaskOutcome } from '../../protocol/schemas';
import { type Proc, spawnRunner } from '../helpers/cluster';
import { WAIT_MS, waitForEvent, within } from '../helpers/wait';
import { testDbName } from '../helpers/db';
import { useCluster } from '../helpers/use-cluster';

describe('a runner stopped with SIGTERM', () => {
  const procs: Proc[] = [];
  afterAll(async () => {
    for (const p of procs) await p.kill('SIGKILL');
  });
  // A long disconnect grace: a requeue that happens at once can only come from the explicit release.
  const c = useCluster({
    dbName: testDbName('shutdown'),
    masterOptions: { disconnectGraceMs: 60_000 },
    feeder: true,
  });

  const runner = async (id: string, extra: string[] = []) => {
    const p = await spawnRunner(c.master, id, extra);
    procs.push(p);
    return p;
  };

  test('finishes what it runs within the grace, gives back the rest at once, and exits 0', async () => {
    const stopping = await runner('stopping', ['--shutdown-grace-ms', '500']);
    const outcomes = new Map<string, TaskOutcome>();
    const all = new Promise<void>((resolve) =>
      c.feeder.on('result', (o: TaskOutcome) => {
        outcomes.set(o.id, o);
        if (outcomes.size === 2) resolve();
      }),
    );
    const running = waitForEvent(
      c.master,
      'task:started',
      (_rid: unknown, refs: unknown) => (refs as unknown[]).length > 0,
    );
    await c.feeder.add([
      { id: 'short', module: 'timed', params: [200, 'short'] },
      { id: 'long', module: 'slow', params: [3000] },
    ]);
    await running;
    const exit = stopping.kill('SIGTERM');
    await runner('taker');
    expect(await exit).toBe(0);
    await within(
      WAIT_MS,
      all,
      () => `outcomes of both tasks (got ${[...outcomes.keys()].join(', ') || 'none'})`,
    );
    expect(outcomes.get('short')).toMatchObject({ state: 'done', attempts: 1 }); // finished within the grace
    expect(outcomes.get('long')).toMatchObject({ state: 'done', attempts: 2 }); // released, ran elsewhere
    expect(stopping.output()).toContain('released unfinished attempts');
  }, 90_000);
});

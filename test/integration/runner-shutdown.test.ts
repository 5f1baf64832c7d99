import type { Feeder } from '../../feeder/feeder';
import type { Master } from '../../master/master';
import type { TaskOutcome } from '../../protocol/schemas';
import { startFeeder } from '../helpers/clients';
import { type Proc, spawnRunner, startMaster } from '../helpers/cluster';
import { WAIT_MS, waitForEvent, within } from '../helpers/wait';
import { testDbName } from '../helpers/db';

describe('a runner stopped with SIGTERM', () => {
  let master: Master;
  let feeder: Feeder;
  const procs: Proc[] = [];

  beforeAll(async () => {
    // A long disconnect grace: a requeue that happens at once can only come from the explicit release.
    master = await startMaster(testDbName('shutdown'), { disconnectGraceMs: 60_000 });
    feeder = await startFeeder(master.url);
  });
  afterAll(async () => {
    for (const p of procs) await p.kill('SIGKILL');
    await feeder?.close();
    await master?.close();
  });

  const runner = async (id: string, extra: string[] = []) => {
    const p = await spawnRunner(master, id, extra);
    procs.push(p);
    return p;
  };

  test('finishes what it runs within the grace, gives back the rest at once, and exits 0', async () => {
    const stopping = await runner('stopping', ['--shutdown-grace-ms', '500']);
    const outcomes = new Map<string, TaskOutcome>();
    const all = new Promise<void>((resolve) =>
      feeder.on('result', (o: TaskOutcome) => {
        outcomes.set(o.id, o);
        if (outcomes.size === 2) resolve();
      }),
    );
    const running = waitForEvent(
      master,
      'task:started',
      (_rid: unknown, refs: unknown) => (refs as unknown[]).length > 0,
    );
    await feeder.add([
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

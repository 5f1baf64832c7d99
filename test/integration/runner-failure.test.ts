import type { TaskOutcome } from '../../protocol/schemas';
import { type Proc, spawnRunner } from '../helpers/cluster';
import { WAIT_MS, waitForEvent, within } from '../helpers/wait';
import { testDbName } from '../helpers/db';
import { useCluster } from '../helpers/use-cluster';

describe('a runner killed mid-task', () => {
  const procs: Proc[] = [];
  afterAll(async () => {
    for (const p of procs) await p.kill('SIGKILL');
  });
  const c = useCluster({
    dbName: testDbName('runnerkill'),
    masterOptions: { disconnectGraceMs: 200 },
    feeder: true,
  });

  const runner = async (id: string) => {
    const p = await spawnRunner(c.master, id);
    procs.push(p);
    return p;
  };

  test('its tasks finish elsewhere and none is lost', async () => {
    const doomed = await runner('doomed');
    await runner('survivor');
    const n = 8;
    const outcomes = new Map<string, TaskOutcome>();
    const all = new Promise<void>((resolve) =>
      c.feeder.on('result', (o: TaskOutcome) => {
        outcomes.set(o.id, o);
        if (outcomes.size === n) resolve();
      }),
    );
    const startedOnDoomed = waitForEvent(c.master, 'task:started', (rid) => rid === 'doomed');
    const refs = await c.feeder.add(
      Array.from({ length: n }, (_, i) => ({ id: `job-${i}`, module: 'timed', params: [1500, `job-${i}`] })),
    );
    const [, running] = (await startedOnDoomed) as unknown as [string, { id: string }[]];
    await doomed.kill('SIGKILL');
    await within(WAIT_MS, all, () => `outcomes of all ${n} tasks (got ${outcomes.size})`);
    expect([...outcomes.keys()].sort()).toEqual(refs.map((r) => r.id).sort());
    for (const o of outcomes.values()) expect(o.state).toBe('done');
    // What the doomed runner was running when it died ran again, as a second attempt.
    for (const { id } of running) expect(outcomes.get(id)!.attempts).toBeGreaterThanOrEqual(2);
  });
});

import { testDbName } from '../helpers/db';
import { useCluster } from '../helpers/use-cluster';

describe('a task that kills its child every time', () => {
  const c = useCluster({ dbName: testDbName('poison'), runners: [{ workers: 2, slots: 2 }], feeder: true });

  test('ends failed with ECRASH after its attempts, while every other task keeps flowing', async () => {
    const pidsBefore = c.runner.pids;
    const respawned: number[] = [];
    c.runner.on('respawn', (pid) => pid !== undefined && respawned.push(pid));
    const outcomes = await c.feeder.work([
      { id: 'poison', module: 'crash', maxAttempts: 3 },
      ...Array.from({ length: 20 }, (_, i) => ({ id: `fine-${i}`, module: 'timed', params: [20, i] })),
    ]);
    expect(outcomes[0]).toMatchObject({ state: 'failed', attempts: 3, error: { code: 'ECRASH' } });
    expect(outcomes.slice(1).every((o) => o.state === 'done')).toBe(true);
    // Each crash replaced its child with a new process, and no crashed child is in the pool again.
    expect(respawned).toHaveLength(3);
    const everUsed = new Set([...pidsBefore, ...respawned]);
    expect(everUsed.size).toBe(pidsBefore.length + respawned.length);
    expect(c.runner.pids).toHaveLength(2);
    const crashed = [...everUsed].filter((p) => !c.runner.pids.includes(p));
    expect(crashed).toHaveLength(3);
    for (const pid of crashed) expect(() => process.kill(pid, 0)).toThrow(); // gone, not parked
  });
});

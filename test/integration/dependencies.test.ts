import mongoose from 'mongoose';
import { taskModel } from '../../models/task';
import { testDbName, testDbUrl } from '../helpers/db';
import { useCluster } from '../helpers/use-cluster';

describe('dependencies', () => {
  const c = useCluster({ dbName: testDbName('deps'), runners: [{ workers: 2, slots: 4 }], feeder: true });
  let conn: mongoose.Connection;
  beforeAll(async () => {
    conn = await mongoose.createConnection(testDbUrl(c.dbName)).asPromise();
  });
  afterAll(async () => {
    await conn?.close();
  });

  test('a batch runs in a valid topological order: each task starts only after its dependencies are done', async () => {
    // a diamond plus a chain: a -> (b, c) -> d -> e
    const batch = [
      { id: 'e', module: 'timed', params: [10, 'e'], dependencies: ['d'], priority: 100 },
      { id: 'd', module: 'timed', params: [10, 'd'], dependencies: ['b', 'c'], priority: 100 },
      { id: 'c', module: 'timed', params: [30, 'c'], dependencies: ['a'] },
      { id: 'b', module: 'timed', params: [10, 'b'], dependencies: ['a'] },
      { id: 'a', module: 'timed', params: [20, 'a'] },
    ];
    const outcomes = await c.feeder.work(batch);
    expect(outcomes.map((o) => o.state)).toEqual(['done', 'done', 'done', 'done', 'done']);
    expect(outcomes.map((o) => o.id)).toEqual(['e', 'd', 'c', 'b', 'a']);

    // The `tasks` documents, in the master's own clock: each task was assigned only after every
    // dependency was final.
    await c.master.flushed();
    const docs = await taskModel(conn)
      .find({ _id: { $in: ['a', 'b', 'c', 'd', 'e'] } })
      .lean();
    const doc = (id: string) => {
      const d = docs.find((x) => x._id === id);
      if (!d?.assigned?.when || !d.assigned.completed)
        throw new Error(`task ${id} has no assigned/completed times`);
      return d.assigned as { when: number; completed: number };
    };
    for (const t of batch)
      for (const d of t.dependencies ?? []) expect(doc(t.id).when).toBeGreaterThanOrEqual(doc(d).completed);
    // And in the runners' clock: every dependent's run began after each dependency's run ended.
    const byId = new Map(outcomes.map((o) => [o.id, o.result as { start: number; end: number }]));
    for (const t of batch)
      for (const d of t.dependencies ?? [])
        expect(byId.get(t.id)!.start).toBeGreaterThanOrEqual(byId.get(d)!.end);
  });

  test('a dependency that fails for good fails its dependents, transitively, with EDEPFAILED', async () => {
    const outcomes = await c.feeder.work([
      { id: 'bad', module: 'throws', params: ['boom'], maxAttempts: 1 },
      { id: 'child', module: 'ok', params: [1], dependencies: ['bad'] },
      { id: 'grandchild', module: 'ok', params: [2], dependencies: ['child'] },
      { id: 'unrelated', module: 'ok', params: [3] },
    ]);
    expect(outcomes.map((o) => o.state)).toEqual(['failed', 'failed', 'failed', 'done']);
    expect(outcomes[0].error?.code).toBe('ETASK');
    expect(outcomes[1].error?.code).toBe('EDEPFAILED');
    expect(outcomes[1].error?.message).toContain('"bad"');
    expect(outcomes[2].error?.code).toBe('EDEPFAILED');
    expect(outcomes[2].error?.message).toContain('"child"');
    expect(outcomes[1].attempts).toBe(0); // never ran
  });

  test('a new task may depend on a task stored earlier, done or failed', async () => {
    const earlier = await c.feeder.work([
      { id: 'earlier', module: 'ok', params: ['x'] },
      { id: 'earlier-bad', module: 'throws', params: ['boom'], maxAttempts: 1 },
    ]);
    expect(earlier.map((o) => o.state)).toEqual(['done', 'failed']);
    const [later, doomed] = await c.feeder.work([
      { module: 'ok', params: ['y'], dependencies: ['earlier'] },
      { module: 'ok', params: ['z'], dependencies: ['earlier-bad'] },
    ]);
    expect(later.state).toBe('done');
    expect(doomed.state).toBe('failed');
    expect(doomed.error?.code).toBe('EDEPFAILED');
  });

  test('unknown dependency ids and cycles are refused when added, with the path of the cycle', async () => {
    await expect(c.feeder.add([{ id: 'x1', module: 'ok', dependencies: ['nope'] }])).rejects.toMatchObject({
      code: 'EVALIDATION',
      message: expect.stringContaining('tasks[0].dependencies[0]: unknown task id "nope"'),
    });
    await expect(
      c.feeder.add([
        { id: 'p', module: 'ok', dependencies: ['r'] },
        { id: 'q', module: 'ok', dependencies: ['p'] },
        { id: 'r', module: 'ok', dependencies: ['q'] },
      ]),
    ).rejects.toMatchObject({
      code: 'EVALIDATION',
      message: expect.stringMatching(/dependency cycle: p -> r -> q -> p/),
    });
    await expect(c.feeder.add([{ id: 'self', module: 'ok', dependencies: ['self'] }])).rejects.toMatchObject({
      message: expect.stringContaining('self -> self'),
    });
    await c.master.flushed(); // anything durable would be in `tasks` now
    const stored = await conn
      .collection<{ _id: string }>('tasks')
      .countDocuments({ _id: { $in: ['x1', 'p', 'q', 'r', 'self'] } });
    expect(stored).toBe(0);
  });
});

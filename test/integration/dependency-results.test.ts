/**
 * A task reads its dependencies' results as `this.dependencies`, against a real master and runner:
 * from memory, from the database when the master no longer holds them (after a restart), and bounded
 * by the master's `maxDependencyBytes` with a clear ETOOLARGE for a result left out.
 */
import { Master } from '../../master/master';
import { testMongoUrl } from '../helpers/db';
import { useCluster } from '../helpers/use-cluster';

describe("dependencies' results", () => {
  const c = useCluster({ runners: [{ runnerId: 'deps-r', workers: 2, slots: 4 }], feeder: true });

  test('an aggregate task sums the results of its dependencies, read from this.dependencies', async () => {
    const outcomes = await c.feeder.work([
      { id: 'agg', module: 'aggregate', dependencies: ['a', 'b', 'c'] },
      { id: 'c', module: 'value', params: [3], dependencies: ['a'] },
      { id: 'a', module: 'value', params: [1] },
      { id: 'b', module: 'value', params: [2] },
    ]);
    expect(outcomes.map((o) => o.state)).toEqual(['done', 'done', 'done', 'done']);
    expect(outcomes[0].result).toEqual({ sum: 6, ids: ['a', 'b', 'c'], leftOut: [] });
  });

  test('a dependency whose result the master no longer holds (after a restart) still reaches the dependent', async () => {
    const [old] = await c.feeder.work([{ id: 'old', module: 'value', params: [40] }]);
    expect(old.state).toBe('done');
    await c.master.flushed();
    await c.restart();
    expect(c.master.scheduler.finals.has('old')).toBe(false);
    const [agg] = await c.feeder.work([
      { id: 'agg-later', module: 'aggregate', dependencies: ['old', 'fresh'] },
      { id: 'fresh', module: 'value', params: [2] },
    ]);
    expect(agg).toMatchObject({ state: 'done', result: { sum: 42, ids: ['old', 'fresh'], leftOut: [] } });
  });

  test('results beyond maxDependencyBytes are left out and named: reading one fails with ETOOLARGE, not retried', async () => {
    await c.restart({ maxDependencyBytes: 1000 });
    // Each result is 402 bytes as JSON: two fit in 1000, the third does not.
    const outcomes = await c.feeder.work([
      { id: 's1', module: 'big-result', params: [400] },
      { id: 's2', module: 'big-result', params: [400] },
      { id: 's3', module: 'big-result', params: [400] },
      { id: 'huge', module: 'big-result', params: [2000] },
      { id: 'sum-all', module: 'aggregate', dependencies: ['s1', 's2', 's3'], maxAttempts: 3 },
      { id: 'sum-sent', module: 'aggregate', params: [true], dependencies: ['s1', 's2', 's3'] },
      { id: 'sum-huge', module: 'aggregate', params: [true], dependencies: ['huge', 's1'] },
      { id: 'read-huge', module: 'aggregate', dependencies: ['huge'] },
    ]);
    const byId = new Map(outcomes.map((o) => [o.id, o]));
    expect(byId.get('sum-all')).toMatchObject({ state: 'failed', attempts: 1, error: { code: 'ETOOLARGE' } });
    expect(byId.get('sum-all')?.error?.message).toBe(
      'the result of dependency "s3" is left out: 402 bytes as JSON, more than the results before it left of ' +
        "the master's maxDependencyBytes (1000 bytes); raise it (--max-dependency-bytes), or read the result with GET /api/tasks/s3",
    );
    expect(byId.get('sum-sent')).toMatchObject({
      state: 'done',
      result: { sum: 800, ids: ['s1', 's2', 's3'], leftOut: ['s3'] },
    });
    // A result larger than the limit on its own is left out; the ones after it still fit.
    expect(byId.get('sum-huge')).toMatchObject({
      state: 'done',
      result: { sum: 400, ids: ['huge', 's1'], leftOut: ['huge'] },
    });
    expect(byId.get('read-huge')?.error?.message).toContain(
      "2002 bytes as JSON, over the master's maxDependencyBytes (1000 bytes)",
    );
  });

  test('maxDependencyBytes above the message limit is refused when the master is made', () => {
    expect(
      () =>
        new Master({
          mongoUrl: testMongoUrl(),
          maxMessageBytes: 128 * 1024,
          maxDependencyBytes: 256 * 1024,
        }),
    ).toThrow('maxDependencyBytes: must be an integer from 0 to maxMessageBytes (131072 bytes); got 262144');
  });
});

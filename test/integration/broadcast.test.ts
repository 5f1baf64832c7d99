import { testDbName } from '../helpers/db';
import { rawFeeder, rawRunner, type RawFeeder, type RawRunner } from '../helpers/raw-clients';
import { useCluster } from '../helpers/use-cluster';

describe('broadcast', () => {
  let feeder: RawFeeder;
  let a: RawRunner;
  let b: RawRunner;
  let c: RawRunner;
  // Declared before the cluster, so the raw clients close before the master does.
  afterAll(() => {
    for (const s of [feeder, a, b, c]) s?.close();
  });
  const cluster = useCluster({ dbName: testDbName('broadcast') });
  beforeAll(async () => {
    feeder = await rawFeeder(cluster.url);
    a = await rawRunner(cluster.url, { runnerId: 'bc-a', slots: 5, data: { role: 'web' } });
    b = await rawRunner(cluster.url, { runnerId: 'bc-b', slots: 5, data: { role: 'web' } });
    c = await rawRunner(cluster.url, { runnerId: 'bc-c', slots: 5, data: { role: 'db' } });
  });

  test('a broadcast runs once on every matching runner and reports one outcome per runner, together', async () => {
    const reply = await feeder.add([
      {
        id: 'flush-cache',
        module: 'ok',
        params: ['x'],
        broadcast: true,
        requires: { role: 'web' },
        maxAttempts: 1,
      },
    ]);
    expect(reply).toMatchObject({ ok: true, tasks: [{ id: 'flush-cache' }] });
    await a.until(() => a.assigned.length === 1 && b.assigned.length === 1);
    expect(c.assigned).toHaveLength(0);
    expect(a.assigned[0]).toMatchObject({ id: 'flush-cache@bc-a', module: 'ok', params: ['x'] });
    await a.finish([{ id: 'flush-cache@bc-a', attempt: 1, ok: true, result: 'a flushed' }]);
    expect(feeder.outcomes.has('flush-cache')).toBe(false); // reported together, not one by one
    await b.finish([
      { id: 'flush-cache@bc-b', attempt: 1, ok: false, error: { code: 'ETASK', message: 'b could not' } },
    ]);
    await feeder.until(() => feeder.outcomes.has('flush-cache'));
    expect(feeder.outcomes.get('flush-cache')).toMatchObject({
      state: 'done',
      result: {
        'bc-a': { state: 'done', result: 'a flushed' },
        'bc-b': { state: 'failed', error: { code: 'ETASK', message: 'b could not' } },
      },
    });
  });

  test('a broadcast with no runner to go to fails with EATO', async () => {
    await feeder.add([{ id: 'nobody', module: 'ok', broadcast: true, requires: { role: 'gpu' } }]);
    await feeder.until(() => feeder.outcomes.has('nobody'));
    expect(feeder.outcomes.get('nobody')).toMatchObject({ state: 'failed', error: { code: 'EATO' } });
  });
});

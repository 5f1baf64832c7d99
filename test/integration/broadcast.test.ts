import type { Master } from '../../master/master';
import { startMaster } from '../helpers/cluster';
import { testDbName } from '../helpers/db';
import { rawFeeder, rawRunner, type RawFeeder, type RawRunner } from '../helpers/raw-clients';

describe('broadcast', () => {
  let master: Master;
  let feeder: RawFeeder;
  let a: RawRunner;
  let b: RawRunner;
  let c: RawRunner;
  beforeAll(async () => {
    master = await startMaster(testDbName('broadcast'));
    feeder = await rawFeeder(master.url);
    a = await rawRunner(master.url, { runnerId: 'bc-a', slots: 5, data: { role: 'web' } });
    b = await rawRunner(master.url, { runnerId: 'bc-b', slots: 5, data: { role: 'web' } });
    c = await rawRunner(master.url, { runnerId: 'bc-c', slots: 5, data: { role: 'db' } });
  });
  afterAll(async () => {
    for (const s of [feeder, a, b, c]) s?.close();
    await master?.close();
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

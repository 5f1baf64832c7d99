/**
 * The master's `defaultRunTimeout`: a task that sets no `runTimeout` would run forever; with the
 * master-wide default its attempt is stopped with ETO after that long, and a task's own `runTimeout`
 * still wins.
 */
import type { Feeder } from '../../feeder/feeder';
import { Master } from '../../master/master';
import type { Runner } from '../../runner/runner';
import { startMaster } from '../helpers/cluster';
import { startFeeder, startRunner } from '../helpers/clients';
import { testDbName } from '../helpers/db';

describe('default run timeout', () => {
  const dbName = testDbName(__filename);
  let master: Master;
  let runner: Runner;
  let feeder: Feeder;

  beforeAll(async () => {
    master = await startMaster(dbName, { defaultRunTimeout: 300 });
    runner = await startRunner(master.url, { workers: 2, slots: 4 });
    feeder = await startFeeder(master.url);
  });
  afterAll(async () => {
    await feeder?.close();
    await runner?.close();
    await master?.close();
  });

  test("a task without runTimeout fails with ETO after the master's default; its own runTimeout wins over it", async () => {
    const [endless, own, quick] = await feeder.work([
      { id: 'endless', module: 'slow', params: [60_000], maxAttempts: 1 },
      { id: 'own', module: 'slow', params: [800], runTimeout: 10_000 },
      { id: 'quick', module: 'slow', params: [50] },
    ]);
    expect(endless).toMatchObject({ state: 'failed', error: { code: 'ETO' } });
    expect(endless.error?.message).toContain('longer than 300 ms');
    expect(own).toMatchObject({ state: 'done', result: { waited: 800 } });
    expect(quick).toMatchObject({ state: 'done', result: { waited: 50 } });
  });

  test('a default that timers cannot honour is refused when the master is made', async () => {
    expect(() => new Master({ mongoUrl: 'mongodb://x', defaultRunTimeout: 0 })).toThrow(
      /defaultRunTimeout: must be an integer from 1 to 2147483647 ms/,
    );
  });
});

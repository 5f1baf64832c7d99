/**
 * The master's `defaultRunTimeout`: a task that sets no `runTimeout` would run forever; with the
 * master-wide default its attempt is stopped with ETO after that long, and a task's own `runTimeout`
 * still wins.
 */
import { Master } from '../../master/master';
import { useCluster } from '../helpers/use-cluster';

describe('default run timeout', () => {
  const c = useCluster({
    masterOptions: { defaultRunTimeout: 300 },
    runners: [{ workers: 2, slots: 4 }],
    feeder: true,
  });

  test("a task without runTimeout fails with ETO after the master's default; its own runTimeout wins over it", async () => {
    const [endless, own, quick] = await c.feeder.work([
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

/**
 * The CI round of the fuzzer (test/adversarial/fuzz.ts): a fixed seed and a small count against a real
 * master with a token and a connected runner. Longer rounds: `npm run fuzz -- --seed N --count M`.
 */
import { capturingLogger } from '../helpers/capture';
import { fuzz } from './fuzz';
import { startCluster, TOKEN, type Cluster } from './cluster';

describe('adversarial: seeded fuzzing', () => {
  let c: Cluster;
  const capture = capturingLogger();
  beforeAll(async () => {
    c = await startCluster(__filename, { token: TOKEN, logger: capture.logger });
  });
  afterAll(async () => {
    await c?.close();
  });

  test('600 seeded random payloads to every event and route leave the master alive and working', async () => {
    // A runner is connected throughout, so fuzzed tasks that pass validation really run.
    await c.runner({ runnerId: 'fuzz-bystander', slots: 4 });
    const report = await fuzz({ url: c.master.url, token: TOKEN, seed: 20261125, count: 600 });
    expect(report.sent).toBe(600);
    expect(report.socketMessages).toBeGreaterThan(300);
    expect(report.httpRequests).toBeGreaterThan(100);
    // No route answered with an internal error.
    expect(report.statuses['500']).toBeUndefined();
    // Nor did any handler throw: refusals are validation, not caught exceptions.
    const failed = capture.lines.filter((l) => /handler failed/.test(String(l.message)));
    expect(failed).toEqual([]);
    await c.assertAlive();
  }, 60_000);
});

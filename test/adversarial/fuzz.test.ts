/**
 * The CI round of the fuzzer (test/adversarial/fuzz.ts): a fixed seed and a small count against a real
 * master with a token and a connected runner. Longer rounds: `npm run fuzz -- --seed N --count M`.
 */
import { capturingLogger } from '../helpers/capture';
import { fuzz } from './fuzz';
import { amplificationShapes, DEPENDENT_OUTCOME_BOUND } from './fuzz-shapes';
import { useAttackedCluster, TOKEN } from './cluster';

describe('adversarial: seeded fuzzing', () => {
  const capture = capturingLogger();
  const c = useAttackedCluster({ token: TOKEN, logger: capture.logger });

  test('600 seeded random payloads to every event and route leave the master alive and working', async () => {
    // A runner is connected throughout, so fuzzed tasks that pass validation really run.
    await c.startRunner({ runnerId: 'fuzz-bystander', slots: 4 });
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

  test(`the amplification shapes (chain, fan-out of an 800 KB error, a 20,000-id watch, runner churn): every dependent outcome under ${DEPENDENT_OUTCOME_BOUND} B, no forged progress forwarded`, async () => {
    await c.startRunner({ runnerId: 'fuzz-shapes-honest', slots: 4 });
    const reports = await amplificationShapes({
      url: c.master.url,
      token: TOKEN,
      seed: 20261207,
      honestRunner: 'fuzz-shapes-honest',
    });
    expect(reports.map((r) => r.shape)).toEqual(['chain', 'fan-out', 'watch', 'churn']);
    for (const r of reports) expect(r.maxOutcomeBytes).toBeLessThanOrEqual(DEPENDENT_OUTCOME_BOUND);
    await c.assertAlive();
  }, 180_000);
});

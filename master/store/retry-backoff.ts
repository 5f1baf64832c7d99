/**
 * The pace of retries after a transient database failure, one schedule for the writer
 * (master/store/store.ts), the folder (master/store/fold.ts) and the rewrite after a drop
 * (master/store/rewrite.ts): the first retry after ~100 ms, doubling to at most 5 s. Jittered, so
 * the writer and the folder, failing together when the server goes away, do not retry in step.
 *
 * One instance per run of tries: `wait()` after each failure, `reset()` after a success, so the
 * next failure waits the shortest time again.
 */
import { backoffDelay } from '../../common/backoff';

const SCHEDULE = { base: 100, cap: 5000 };

export class RetryBackoff {
  private failures = 0;

  /**
   * Counts a failure, tells `before` the wait and how many failures in a row there have been (for
   * the log), then waits.
   */
  async wait(before?: (waitMs: number, failures: number) => void): Promise<void> {
    const failures = ++this.failures;
    const waitMs = backoffDelay(failures - 1, SCHEDULE);
    before?.(waitMs, failures);
    await new Promise((r) => setTimeout(r, waitMs));
  }

  /** A try went through. */
  reset(): void {
    this.failures = 0;
  }
}

/**
 * Retry policy: whether a failed attempt runs again, and after how long.
 *
 * - An attempt reported `unrecoverable` fails the task for good.
 * - Otherwise the task runs again while its counted attempts (`attempts - uncounted`) are fewer than
 *   `maxAttempts`; attempts lost through no fault of the task (requeued uncounted) do not count.
 * - The delay is the task's `backoff`, else the master's `retryBackoff`: fixed or exponential, capped
 *   by `maxDelay` (default 60 s), with jitter unless it is turned off. Meanwhile the task is ready but
 *   held (`retryAt`): the `backoff` policy keeps it from running, and the core's wake-up heap queues
 *   it again at `retryAt` (no timer of its own).
 */
import { backoffDelay } from '../../../common/backoff';
import type { TaskPolicy } from '../policy';
import type { Backoff, TaskRecord } from '../../task-record';

export class RetryPolicy {
  constructor(private readonly defaults: Backoff) {}

  mayRetry(t: TaskRecord, unrecoverable: boolean): boolean {
    return !unrecoverable && t.attempts - (t.uncounted ?? 0) < t.maxAttempts;
  }

  /** Milliseconds before the next attempt of `t` (0: at once). */
  delay(t: TaskRecord): number {
    const b = t.backoff ?? this.defaults;
    if (b.delay <= 0) return 0;
    return backoffDelay(t.attempts - 1, {
      base: b.delay,
      cap: b.maxDelay ?? 60_000,
      factor: b.type === 'fixed' ? 1 : 2,
      jitter: b.jitter ?? true,
    });
  }
}

/** A retried task waits out its backoff (`retryAt`, set by the core's `retry`). */
export const backoff: TaskPolicy = {
  name: 'backoff',
  scope: 'task',
  check: (_ctx, t, now) => (t.retryAt && t.retryAt > now ? 'BACKOFF' : null),
  describe(_ctx, _code, t, now) {
    const after = t.error ? ` after ${t.error.code}` : '';
    return `waiting out the retry backoff${after}: ${(t.retryAt ?? now) - now} ms left`;
  },
  wakeAt: (_ctx, t, now) => t.retryAt ?? now,
};

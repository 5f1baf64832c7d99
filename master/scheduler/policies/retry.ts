/**
 * Retry policy: whether a failed attempt runs again, and after how long.
 *
 * - An attempt reported `unrecoverable` fails the task for good.
 * - Otherwise the task runs again while its counted attempts (`attempts - uncounted`) are fewer than
 *   `maxAttempts`; attempts lost through no fault of the task (requeued uncounted) do not count.
 * - The delay is the task's `backoff`, else the master's `retryBackoff`: fixed or exponential, capped
 *   by `maxDelay` (default 60 s), with jitter unless it is turned off. Meanwhile the task is ready but
 *   out of the queue (`retryAt`); the timers are owned here and cleared on close.
 */
import { backoffDelay } from '../../../common/backoff';
import type { Backoff, TaskRecord } from '../../task-record';
import { reason, type Reason } from './reason';

export class RetryPolicy {
  private readonly timers = new Set<NodeJS.Timeout>();

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

  /** Calls `requeue(t)` after `wait` ms, unless the policy is closed first. */
  later(t: TaskRecord, wait: number, requeue: (t: TaskRecord) => void): void {
    t.retryAt = Date.now() + wait;
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      t.retryAt = null;
      requeue(t);
    }, wait);
    timer.unref();
    this.timers.add(timer);
  }

  explain(t: TaskRecord, now: number): Reason | null {
    if (!t.retryAt || t.retryAt <= now) return null;
    const after = t.error ? ` after ${t.error.code}` : '';
    return reason('BACKOFF', `waiting out the retry backoff${after}: ${t.retryAt - now} ms left`);
  }

  close(): void {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
  }
}

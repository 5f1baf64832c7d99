/**
 * Delayed tasks: a task added with `runAt` (or `delay`, turned into `runAt` by the master's clock at
 * the add) is stored at once and may not start before that time. It is not a state of its own: the
 * task is waiting or ready as any other, and this policy holds it until `runAt`; then priority,
 * dependencies and the rest of the list apply. Views show such a task as `delayed` (`viewState`).
 *
 * Never early: `check` refuses it while `runAt > now`, on every pass. Not walked by the passes: the
 * core puts a delayed task straight onto its heap of wake-ups when it is queued (`delayedUntil`), so
 * ten thousand of them cost a distribution pass nothing, and the heap queues each again at `runAt`.
 */
import type { TaskPolicy } from '../policy';
import type { TaskRecord } from '../../task-record';

/** `t`'s `runAt` while it is still to come at `now`, else 0. */
export function delayedUntil(t: Pick<TaskRecord, 'runAt'>, now: number): number {
  return t.runAt && t.runAt > now ? t.runAt : 0;
}

export const delayed: TaskPolicy = {
  name: 'delayed',
  scope: 'task',
  check: (_ctx, t, now) => (delayedUntil(t, now) > 0 ? 'DELAYED' : null),
  describe: (_ctx, _code, t, now) => describeDelay(t.runAt ?? now, now),
  wakeAt: (_ctx, t, now) => t.runAt ?? now,
};

/** `delayed until 2026-12-07T12:00:00.000Z, 5000 ms left`. */
export function describeDelay(runAt: number, now: number): string {
  return `delayed until ${new Date(runAt).toISOString()}, ${Math.max(0, runAt - now)} ms left`;
}

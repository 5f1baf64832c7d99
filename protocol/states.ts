/**
 * Task states: one frozen list shared by the mongoose enum, the wire schemas, the dashboard and tests.
 *
 *   waiting   stored, some dependency not done yet
 *   ready     every dependency done; queued by priority
 *   assigned  sent to a runner, not yet started there
 *   running   the runner reported the start of this attempt
 *   done      finished with a result (final)
 *   failed    failed for good: attempts exhausted, unrecoverable, or a dependency failed (final)
 *   cancelled cancelled by a feeder (final)
 */
export const TASK_STATES = Object.freeze([
  'waiting',
  'ready',
  'assigned',
  'running',
  'done',
  'failed',
  'cancelled',
] as const);

export type TaskState = (typeof TASK_STATES)[number];

export const FINAL_STATES: readonly TaskState[] = Object.freeze(['done', 'failed', 'cancelled']);
export const ACTIVE_STATES: readonly TaskState[] = Object.freeze(['assigned', 'running']);

export function isFinal(state: TaskState): boolean {
  return state === 'done' || state === 'failed' || state === 'cancelled';
}

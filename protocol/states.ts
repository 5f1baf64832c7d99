/**
 * Task states: one frozen list shared by the mongoose enum, the wire schemas, the dashboard and tests,
 * and the table of the changes allowed between them (`TRANSITIONS`), which the master asserts on
 * every change it makes.
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

export function isFinal(state: TaskState): boolean {
  return state === 'done' || state === 'failed' || state === 'cancelled';
}

/**
 * `from → allowed to`. Each edge, and the transition of the scheduler (master/scheduler/core.ts)
 * that takes it:
 *
 *   waiting  → ready            markReady: the last dependency is done
 *   waiting  → done             complete: every copy of a broadcast is final
 *   ready    → assigned         assign: a runner was chosen; reclaim: the runner an attempt was lost
 *                               from reports it still holds it, and nobody took it since
 *   ready    → done             shareOutcome: parked behind a leader with its key, which succeeded
 *   assigned → running          markRunning: the runner reported the start (or kept it across a restart)
 *   assigned, running → done    complete: the result of the current attempt
 *   assigned, running → ready   retry (counts against maxAttempts), requeueUncounted (does not: the
 *                               runner gave it back, was lost in a restart, or reported EMODULE)
 *   open     → failed           failForGood: attempts exhausted, unrecoverable, ECSTO, EATO, EDEPFAILED
 *   open     → cancelled        failForGood with ECANCELLED
 *   open, done, cancelled → failed   persistFailed: the database refused the record (EPERSIST)
 *   failed, cancelled → waiting, ready   revive: an operator's retry
 *
 * (open: waiting, ready, assigned, running.)
 */
export const TRANSITIONS: Readonly<Record<TaskState, readonly TaskState[]>> = Object.freeze({
  waiting: Object.freeze(['ready', 'done', 'failed', 'cancelled'] as const),
  ready: Object.freeze(['assigned', 'done', 'failed', 'cancelled'] as const),
  assigned: Object.freeze(['running', 'done', 'ready', 'failed', 'cancelled'] as const),
  running: Object.freeze(['done', 'ready', 'failed', 'cancelled'] as const),
  done: Object.freeze(['failed'] as const),
  failed: Object.freeze(['waiting', 'ready'] as const),
  cancelled: Object.freeze(['waiting', 'ready', 'failed'] as const),
});

export function canTransition(from: TaskState, to: TaskState): boolean {
  return TRANSITIONS[from].includes(to);
}

/** A change the table does not allow: a bug in the master, never a user's error. */
export class IllegalTransition extends Error {
  readonly code = 'EINTERNAL';
  constructor(
    readonly taskId: string,
    readonly from: TaskState,
    readonly to: TaskState,
  ) {
    super(`illegal transition of task "${taskId}": ${from} → ${to}`);
  }
}

/** Throws `IllegalTransition` unless `from → to` is in the table. */
export function assertTransition(taskId: string, from: TaskState, to: TaskState): void {
  if (!TRANSITIONS[from].includes(to)) throw new IllegalTransition(taskId, from, to);
}

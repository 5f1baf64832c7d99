/**
 * Why a task does not run (yet), or not on a given runner: a stable code and a sentence. Each policy
 * answers for itself (`explain`); the scheduler asks them in the order it applies them
 * (`Scheduler.explain`). Codes are stable for scripts; messages are for people.
 */
export type ReasonCode =
  /** No task with this id is in memory (it may be final and stored, or unknown). */
  | 'UNKNOWN_TASK'
  | 'UNKNOWN_RUNNER'
  /** The task is final, or already assigned or running: nothing holds it back. */
  | 'FINAL'
  | 'ASSIGNED'
  | 'DEPENDENCY'
  | 'PARKED'
  | 'BACKOFF'
  /** The database is far behind: new work waits until it catches up. */
  | 'STORE_BEHIND'
  | 'NO_RUNNER'
  /** No connected runner has the task's module (or every one that announces it failed to load it). */
  | 'NO_MODULE'
  | 'DISCONNECTED'
  | 'DRAINING'
  | 'NOT_ELIGIBLE'
  | 'AFFINITY'
  | 'NO_FREE_SLOT'
  | 'PRIORITY_SLOTS'
  /** Nothing holds it back: the next distribution pass assigns it. */
  | 'QUEUED';

export interface Reason {
  code: ReasonCode;
  message: string;
}

export function reason(code: ReasonCode, message: string): Reason {
  return { code, message };
}

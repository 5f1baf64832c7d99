/**
 * Why a task does not run (yet), or not on a given runner: a stable code and a sentence. Each policy
 * answers for itself (`check` and `describe`, master/scheduler/policy.ts); `Scheduler.explain` asks
 * them in the order `distribute` does. Codes are stable for scripts; messages are for people.
 */
export type ReasonCode = BuiltinReasonCode | PolicyReasonCode;

/** A policy added to the list names its own codes: upper case, like the built-in ones. */
export type PolicyReasonCode = Uppercase<string>;

export type BuiltinReasonCode =
  /** No task with this id is in memory (it may be final and stored, or unknown). */
  | 'UNKNOWN_TASK'
  | 'UNKNOWN_RUNNER'
  /** The task is final, or already assigned or running: nothing holds it back. */
  | 'FINAL'
  | 'ASSIGNED'
  | 'DEPENDENCY'
  | 'PARKED'
  | 'BACKOFF'
  /** Added with `runAt` or `delay`, and its time has not come. */
  | 'DELAYED'
  /** The database is far behind: new work waits until it catches up. */
  | 'STORE_BEHIND'
  /** No runner is connected, or the task is pinned to one that is not. */
  | 'NO_RUNNER'
  /** No connected runner has the task's module (or every one that announces it failed to load it). */
  | 'NO_MODULE'
  | 'DISCONNECTED'
  | 'DRAINING'
  | 'NOT_ELIGIBLE'
  | 'AFFINITY'
  | 'NO_FREE_SLOT'
  | 'PRIORITY_SLOTS'
  /** A rate limit or concurrency cap of its module or group holds it (policies/limits.ts). */
  | 'LIMITED'
  /** Nothing holds it back: the next distribution pass assigns it. */
  | 'QUEUED';

export interface Reason {
  code: ReasonCode;
  message: string;
  /** When the task may go (ISO 8601), where the policy that holds it knows. */
  until?: string;
}

export function reason(code: ReasonCode, message: string): Reason {
  return { code, message };
}

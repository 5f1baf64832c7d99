/**
 * What a task module sees as `this`. Types only: task files written in TypeScript may copy or import
 * them (`function (this: TaskContext, ...params: unknown[])`).
 */
export interface TaskLog {
  error(message: unknown, meta?: Record<string, unknown>): void;
  warn(message: unknown, meta?: Record<string, unknown>): void;
  info(message: unknown, meta?: Record<string, unknown>): void;
  debug(message: unknown, meta?: Record<string, unknown>): void;
}

export interface TaskContext {
  id: string;
  attempt: number;
  module: string;
  priority: number;
  batch?: string;
  /** Fires when the attempt is cancelled or exceeds its `runTimeout`; `signal.reason` carries the code. */
  signal: AbortSignal;
  /** Lines go to the runner's log with this task's id. */
  log: TaskLog;
  /** Ends the attempt with a result (the original taskmaster style); later calls are ignored. */
  done(result?: unknown): void;
  /** Ends the attempt with an error; `{ unrecoverable: true }` on it stops retries. */
  error(err?: unknown): void;
  /**
   * Ends the attempt: the task hit a limit of what it calls (an API answering 429). It goes back to
   * the queue without counting an attempt, and its module's and group's limits hold every task of
   * theirs for `ms` (the master's default, 1 s, when not given). The same as throwing an error with
   * `code: 'ERATELIMITED'` (and `retryAfter: ms`). Later calls are ignored.
   */
  rateLimited(ms?: number): void;
  /** Reports progress, a fraction from 0 to 1, to feeders watching the task. */
  progress(n: number): void;
  /** Adds follow-up tasks through the master; resolves to their `{ id, _id }` references. */
  add(tasks: unknown, batch?: string): Promise<unknown>;
  /**
   * Its dependencies' results by id (BullMQ's `getChildrenValues`): one key per dependency, in the
   * order the task names them. The master sends at most its `maxDependencyBytes` of results (256 KB
   * by default); reading one left out (over that limit, or no longer stored) throws an unrecoverable
   * ETOOLARGE (or EDEPFAILED) naming it — a task never sees a gap it did not ask about.
   */
  dependencies: Readonly<Record<string, unknown>>;
  /** Ids of the dependencies whose results were left out: check it to do without them. */
  dependenciesLeftOut: readonly string[];
}

export type TaskFunction = (this: TaskContext, ...params: unknown[]) => unknown;

/**
 * A task as the scheduler holds it in memory. The database holds the same facts (`tasks`);
 * this is the copy the scheduler reads on the hot path. `newTaskRecord` is the one place a record is
 * built, from an add (master/scheduler/scheduler.ts) or from a stored document (master/scheduler/policies/recovery.ts);
 * `firstDocOf` is the document an add writes for it.
 */
import type { TaskState } from '../protocol/states';
import type { ReportedError } from '../protocol/errors';
import type { TaskDoc } from '../models/task';

/** A task's dedup key; `until` (epoch ms): the key stays taken until then even once the task is final. */
export type Dedup = { key: string; until?: number };

export type Backoff = { type: 'fixed' | 'exponential'; delay: number; maxDelay?: number; jitter?: boolean };

export interface TaskRecord {
  /** The same as `id` (the `tasks` document's `_id`); the original protocol's name for it. */
  _id: string;
  id: string;
  module: string;
  /**
   * Its params as JSON text, made once when it enters memory: one string costs a queued task about
   * half what the parsed values do (an array, an object per value, a string per field). Read with
   * {@link paramsOf} where the values are needed (its assignment, a view of it).
   */
  paramsJson: string;
  /** Its size as `queueLimitBytes` counts it (set when it enters memory). */
  bytes?: number;
  priority: number;
  /** Shared and frozen when empty ({@link NO_IDS}), as on most tasks. */
  dependencies: readonly string[];
  batch: string;
  /**
   * The idempotency token of the add that created it (`addKey`), absent when it had none. All tasks of
   * one add share the one string, so it costs a task one reference.
   */
  addKey?: string;
  created: number;
  state: TaskState;
  /** Number of the current (or last) attempt; 0 before the first assignment. */
  attempts: number;
  maxAttempts: number;
  /** Attempts lost through no fault of the task (requeued uncounted); not counted against maxAttempts. */
  uncounted?: number;
  /** Journal revision of the last change recorded for this task. */
  rev: number;
  /** Dependencies not done yet. */
  unmet: number;
  /** Tasks that depend on this one; the shared {@link NO_TASKS} until one does (`addDependent`). */
  dependents: readonly TaskRecord[];
  /** Runner holding the current attempt, if assigned or running. */
  who: string | null;
  /**
   * Ready again because its attempt's runner was lost (or did not come back after a master restart),
   * and not reassigned since: that runner may still hold the attempt and take it back (`reclaim`).
   */
  lostFrom?: string | null;
  assignedAt: number | null;
  /** When it became final (epoch ms). */
  finishedAt?: number | null;
  /** Result and error as stored (encoded once, when the change is recorded). */
  stored?: { result?: unknown; error?: unknown };
  result?: unknown;
  error?: ReportedError | null;
  moduleHash?: string | null;
  /** The running attempt's last reported progress (0–1), for the dashboard. */
  progress?: number;
  runTimeout?: number | null;
  /**
   * When the master takes the current attempt back if its runner has not reported (epoch ms): its run
   * timeout plus `runTimeoutGraceMs` after it was assigned. Null: no run timeout.
   */
  runDeadline?: number | null;
  timeout?: number | null;
  assignTimeout?: number | null;
  deadline?: number | null;
  /** Position in the ready queue (FIFO within a priority). */
  seq: number;
  /** When it last became ready (start of its assignTimeout). */
  readyAt?: number | null;
  /** Ready but out of the queue until then: waiting out a retry backoff (epoch ms). Stored while ready. */
  retryAt?: number | null;
  /** Not before this time (epoch ms): a delayed task (`runAt`, or the add's time plus `delay`). */
  runAt?: number | null;
  key?: string | null;
  /** Fair-share group (a tenant, a customer); null: the default group. */
  group?: string | null;
  /** A schedule's task for a slot missed while no master ran, created late (master/schedules/). */
  backfilled?: boolean;
  affinity?: string | null;
  /** A broadcast: its dependencies are its per-runner copies; it never runs itself. */
  broadcast?: boolean;
  requires?: Record<string, string | number | boolean | null> | null;
  /** Runner id the task must run on. */
  runner?: string | null;
  /** Its dedup key, and until when the key stays taken once final (master/scheduler/dedup.ts). */
  dedup?: Dedup | null;
  backoff?: Backoff | null;
  /** Tasks with the same key parked behind this one, waiting for its outcome (holdSimilarWork). */
  parked?: TaskRecord[];
  /** The task this one is parked behind (holdSimilarWork). */
  parkedBehind?: TaskRecord | null;
}

/** What a record is built from: the facts given or stored; everything else starts empty. */
export type TaskInit = Pick<TaskRecord, 'id' | 'module' | 'batch' | 'created' | 'state' | 'maxAttempts'> & {
  params?: unknown[];
} & Partial<
    Pick<
      TaskRecord,
      | 'priority'
      | 'dependencies'
      | 'attempts'
      | 'uncounted'
      | 'rev'
      | 'who'
      | 'assignedAt'
      | 'result'
      | 'error'
      | 'moduleHash'
      | 'runTimeout'
      | 'timeout'
      | 'assignTimeout'
      | 'deadline'
      | 'key'
      | 'group'
      | 'backfilled'
      | 'affinity'
      | 'backoff'
      | 'requires'
      | 'runner'
      | 'broadcast'
      | 'addKey'
      | 'dedup'
      | 'runAt'
      | 'retryAt'
    >
  >;

/**
 * The empty lists every record starts with: shared, so a queued task does not carry two empty arrays
 * of its own (~32 bytes each), and frozen, so a push into one throws instead of reaching every task.
 */
export const NO_IDS: readonly string[] = Object.freeze([]);
export const NO_TASKS: readonly TaskRecord[] = Object.freeze([]);

/** `d` depends on `t`: `t`'s list of dependents gets its own array at its first. */
export function addDependent(t: TaskRecord, d: TaskRecord): void {
  if (t.dependents === NO_TASKS) t.dependents = [d];
  else (t.dependents as TaskRecord[]).push(d);
}

export function newTaskRecord(i: TaskInit): TaskRecord {
  return {
    _id: i.id,
    id: i.id,
    module: i.module,
    paramsJson: paramsText(i.params),
    priority: i.priority ?? 0,
    dependencies: i.dependencies && i.dependencies.length > 0 ? i.dependencies : NO_IDS,
    batch: i.batch,
    // Set even when absent, so every record has the same shape.
    addKey: i.addKey,
    created: i.created,
    state: i.state,
    attempts: i.attempts ?? 0,
    maxAttempts: i.maxAttempts,
    uncounted: i.uncounted ?? 0,
    rev: i.rev ?? 0,
    unmet: 0,
    dependents: NO_TASKS,
    who: i.who ?? null,
    assignedAt: i.assignedAt ?? null,
    result: i.result,
    error: i.error ?? null,
    moduleHash: i.moduleHash ?? null,
    runTimeout: i.runTimeout ?? null,
    timeout: i.timeout ?? null,
    assignTimeout: i.assignTimeout ?? null,
    deadline: i.deadline ?? null,
    seq: 0,
    // Set on every queued task: in the literal, so none needs a property array of its own for them.
    bytes: undefined,
    readyAt: null,
    key: i.key ?? null,
    group: i.group ?? null,
    backfilled: i.backfilled === true,
    affinity: i.affinity ?? null,
    backoff: i.backoff ?? null,
    requires: i.requires ?? null,
    runner: i.runner ?? null,
    broadcast: i.broadcast === true,
    dedup: i.dedup ?? null,
    runAt: i.runAt ?? null,
    retryAt: i.retryAt ?? null,
  };
}

/** No params: one string for every task that has none. */
const NO_PARAMS = '[]';

function paramsText(params: unknown[] | undefined): string {
  if (params === undefined || params.length === 0) return NO_PARAMS;
  return JSON.stringify(params);
}

/** A task's params as values (parsed from its text each time: the caller owns the copy). */
export function paramsOf(t: TaskRecord): unknown[] {
  return t.paramsJson === NO_PARAMS ? [] : (JSON.parse(t.paramsJson) as unknown[]);
}

/**
 * The document an add writes: only what differs from the defaults. `params`: the values the add
 * gave, when the caller has them (else parsed from the record's text).
 */
export function firstDocOf(t: TaskRecord, params: unknown[] = paramsOf(t)): TaskDoc {
  const d: TaskDoc = {
    _id: t.id,
    batch: t.batch,
    module: t.module,
    params,
    state: t.state,
    attempts: 0,
    maxAttempts: t.maxAttempts,
    created: t.created,
    updated: t.created,
    rev: 0,
  };
  if (t.priority) d.priority = t.priority;
  if (t.dependencies.length > 0) d.dependencies = [...t.dependencies];
  if (t.timeout) d.timeout = t.timeout;
  if (t.runTimeout) d.runTimeout = t.runTimeout;
  if (t.assignTimeout) d.assignTimeout = t.assignTimeout;
  if (t.deadline) d.deadline = t.deadline;
  if (t.key) d.key = t.key;
  if (t.group) d.group = t.group;
  if (t.backfilled) d.backfilled = true;
  if (t.affinity) d.affinity = t.affinity;
  if (t.backoff) d.backoff = t.backoff;
  if (t.requires) d.requires = t.requires;
  if (t.runner) d.runner = t.runner;
  if (t.broadcast) d.broadcast = true;
  if (t.addKey) d.addKey = t.addKey;
  if (t.dedup) d.dedup = t.dedup;
  if (t.runAt) d.runAt = t.runAt;
  return d;
}

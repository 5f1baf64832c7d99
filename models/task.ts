/**
 * The `tasks` collection: one document per task, current within about a second of every change
 * (master/store/store.ts folds each task's latest state into it).
 *
 * `_id` is the task's id: the caller's, or a fresh ObjectId in hex. Dependencies, the wire protocol
 * and every look-up name tasks by it, so each of the master's reads is an `_id` look-up, and the
 * `_id` index is what keeps ids unique: no second index to maintain on every insert. Fields at their
 * default are left out (a document holds what differs), so a new task costs fewer bytes to write.
 *
 * User values (`params`, `result`, `error.details`, `requires`) go through models/codec.ts.
 */
import { Schema, type Connection, type Model } from 'mongoose';
import { TASK_STATES, type TaskState } from '../protocol/states';

export interface TaskDoc {
  /** The task's id. */
  _id: string;
  created: number;
  updated: number;
  /** Default 0. */
  priority?: number;
  /** Runner of the current (or last) attempt, when it was assigned, when the task became final. */
  assigned?: { who?: string | null; when?: number | null; completed?: number | null };
  module: string;
  params: unknown[];
  /** Default none. */
  dependencies?: string[];
  state: TaskState;
  attempts: number;
  maxAttempts: number;
  /** Attempts lost through no fault of the task, not counted against maxAttempts. */
  uncounted?: number;
  result?: unknown;
  error?: { code: string; message: string; details?: unknown } | null;
  batch: string;
  /**
   * The idempotency token of the add that created the task (absent when it had none): an add with the
   * same key naming the same ids is a retry of that add, answered without storing anything.
   */
  addKey?: string;
  timeout?: number | null;
  runTimeout?: number | null;
  assignTimeout?: number | null;
  /** Epoch ms after which the task fails with ECSTO (feeder's call time + timeout). */
  deadline?: number | null;
  moduleHash?: string | null;
  /** Revision of the latest change folded into this document (0: as added). */
  rev: number;
  /** Lease epoch of the master that last wrote it (master/lease.ts): an older one never overwrites it. */
  epoch?: number;
  key?: string | null;
  requires?: Record<string, unknown> | null;
  runner?: string | null;
  affinity?: string | null;
  /** Fair-share group (a tenant, a customer). */
  group?: string | null;
  /** A schedule's task for a slot missed while no master ran, created late. */
  backfilled?: boolean;
  broadcast?: boolean;
  /**
   * Deduplication key, and until when it stays taken after the task is final (epoch ms: the add's
   * time plus the task's `dedup.ttl`; absent: only while the task is not final).
   */
  dedup?: { key: string; until?: number } | null;
  backoff?: { type: 'fixed' | 'exponential'; delay: number; maxDelay?: number; jitter?: boolean } | null;
  /** A delayed task: not before this time (epoch ms, the master's clock for a `delay`). */
  runAt?: number;
  /** A ready task waiting out its retry backoff: not before this time (epoch ms); null or absent: none. */
  retryAt?: number | null;
}

export const taskSchema = new Schema<TaskDoc>(
  {
    _id: { type: String, required: true },
    created: { type: Number, required: true },
    updated: { type: Number, required: true },
    priority: { type: Number },
    assigned: {
      who: { type: String },
      when: { type: Number },
      completed: { type: Number },
    },
    module: { type: String, required: true },
    params: { type: [Schema.Types.Mixed], default: [] },
    dependencies: { type: [String], default: undefined },
    state: { type: String, enum: TASK_STATES, required: true },
    attempts: { type: Number, default: 0 },
    maxAttempts: { type: Number, default: 3 },
    uncounted: { type: Number },
    result: { type: Schema.Types.Mixed },
    error: { type: Schema.Types.Mixed },
    batch: { type: String, required: true },
    addKey: { type: String },
    timeout: { type: Number },
    runTimeout: { type: Number },
    assignTimeout: { type: Number },
    deadline: { type: Number },
    moduleHash: { type: String },
    rev: { type: Number, default: 0 },
    epoch: { type: Number },
    key: { type: String },
    requires: { type: Schema.Types.Mixed },
    runner: { type: String },
    affinity: { type: String },
    group: { type: String },
    backfilled: { type: Boolean },
    broadcast: { type: Boolean },
    dedup: { type: Schema.Types.Mixed },
    backoff: { type: Schema.Types.Mixed },
    runAt: { type: Number },
    retryAt: { type: Number },
  },
  { collection: 'tasks', versionKey: false, minimize: true },
);

// One index per query the master runs besides `_id` look-ups:
taskSchema.index({ state: 1, updated: 1 }); // recovery (every task not final) and retention (final, oldest first)
taskSchema.index({ batch: 1, state: 1 }); // batch status and purge by batch
// Recovery of final tasks whose dedup key is still taken; sparse, so tasks without one cost nothing.
taskSchema.index({ 'dedup.until': 1 }, { sparse: true });

export function taskModel(conn: Connection): Model<TaskDoc> {
  return (conn.models.Task as Model<TaskDoc> | undefined) ?? conn.model<TaskDoc>('Task', taskSchema);
}

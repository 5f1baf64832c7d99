/**
 * The `tasks` collection. The fields of the original taskmaster schema (created, priority, assigned,
 * module, params, dependencies) plus the scheduling state the master writes through.
 *
 * `id` is always set: the caller's id, or the `_id` as a hex string, so dependencies and the wire
 * protocol name every task the same way. It is unique within the master (unique index).
 */
import { Schema, type Connection, type Model, type Types } from 'mongoose';
import { TASK_STATES, type TaskState } from '../protocol/states';

export interface TaskDoc {
  _id: Types.ObjectId;
  id: string;
  created: number;
  updated: number;
  priority: number;
  assigned: { who: string | null; when: number | null; completed: number | null };
  module: string;
  params: unknown[];
  dependencies: string[];
  state: TaskState;
  attempts: number;
  maxAttempts: number;
  result?: unknown;
  error?: { code: string; message: string; details?: unknown } | null;
  batch: string;
  timeout?: number | null;
  runTimeout?: number | null;
  assignTimeout?: number | null;
  /** Epoch ms after which the task fails with ECSTO (feeder's call time + timeout). */
  deadline?: number | null;
  moduleHash?: string | null;
  /** Journal revision folded into this document (0: as added). */
  rev: number;
  key?: string | null;
  requires?: Record<string, unknown> | null;
  runner?: string | null;
  affinity?: string | null;
  broadcast?: boolean;
  backoff?: { type: 'fixed' | 'exponential'; delay: number; maxDelay?: number; jitter?: boolean } | null;
}

export const taskSchema = new Schema<TaskDoc>(
  {
    id: { type: String, required: true },
    created: { type: Number, required: true },
    updated: { type: Number, required: true },
    priority: { type: Number, default: 0 },
    assigned: {
      who: { type: String, default: null },
      when: { type: Number, default: null },
      completed: { type: Number, default: null },
    },
    module: { type: String, required: true },
    params: { type: [Schema.Types.Mixed], default: [] },
    dependencies: { type: [String], default: [] },
    state: { type: String, enum: TASK_STATES, required: true },
    attempts: { type: Number, default: 0 },
    maxAttempts: { type: Number, default: 3 },
    result: { type: Schema.Types.Mixed },
    error: {
      type: new Schema({ code: String, message: String, details: Schema.Types.Mixed }, { _id: false }),
      default: null,
    },
    batch: { type: String, required: true },
    timeout: { type: Number, default: null },
    runTimeout: { type: Number, default: null },
    assignTimeout: { type: Number, default: null },
    deadline: { type: Number, default: null },
    moduleHash: { type: String, default: null },
    rev: { type: Number, default: 0 },
    key: { type: String, default: null },
    requires: { type: Schema.Types.Mixed, default: null },
    runner: { type: String, default: null },
    affinity: { type: String, default: null },
    broadcast: { type: Boolean, default: false },
    backoff: { type: Schema.Types.Mixed, default: null },
  },
  // `id: false`: the schema has a real `id` field, so mongoose's virtual must not shadow it.
  { collection: 'tasks', id: false, versionKey: false, minimize: false },
);

// One index per query the master runs:
taskSchema.index({ id: 1 }, { unique: true }); // dependency look-ups, watch, results by id
taskSchema.index({ state: 1 }); // recovery: every task not final
taskSchema.index({ batch: 1, state: 1 }); // batch status

export function taskModel(conn: Connection): Model<TaskDoc> {
  return (conn.models.Task as Model<TaskDoc> | undefined) ?? conn.model<TaskDoc>('Task', taskSchema);
}

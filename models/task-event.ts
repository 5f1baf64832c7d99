/**
 * The `task_events` collection: the append-only journal of every state change after a task was
 * stored. One document per change, `(task, rev)` unique.
 *
 * Why a journal: the master is the only writer, and inserting in ordered batches is what every
 * MongoDB-wire server does fast and atomically per document. Updating a task document on each
 * transition would cost one filtered update per change, and FerretDB 1.24 (SQLite) executes a
 * filtered update as a scan of the whole collection. The unique `(task, rev)` index is the fencing
 * token: a second writer (a stale master) that tries to record the same revision of a task fails.
 * Final outcomes are also folded into `tasks` (see master/store.ts), so `tasks` answers "what
 * happened" without reading the journal.
 */
import { Schema, type Connection, type Model } from 'mongoose';
import { TASK_STATES, type TaskState } from '../protocol/states';

export interface TaskEventDoc {
  /** The task's `id`. */
  task: string;
  /** 1, 2, 3 … per task, in the order the master made the changes. */
  rev: number;
  at: number;
  state: TaskState;
  attempt: number;
  /** Runner the attempt was assigned to. */
  who?: string | null;
  result?: unknown;
  error?: { code: string; message: string; details?: unknown } | null;
  moduleHash?: string | null;
}

export const taskEventSchema = new Schema<TaskEventDoc>(
  {
    task: { type: String, required: true },
    rev: { type: Number, required: true },
    at: { type: Number, required: true },
    state: { type: String, enum: TASK_STATES, required: true },
    attempt: { type: Number, required: true },
    who: { type: String, default: null },
    result: { type: Schema.Types.Mixed },
    error: { type: Schema.Types.Mixed, default: null },
    moduleHash: { type: String, default: null },
  },
  { collection: 'task_events', versionKey: false, id: false },
);

taskEventSchema.index({ task: 1, rev: 1 }, { unique: true }); // fencing + replay of one task

export function taskEventModel(conn: Connection): Model<TaskEventDoc> {
  return (
    (conn.models.TaskEvent as Model<TaskEventDoc> | undefined) ??
    conn.model<TaskEventDoc>('TaskEvent', taskEventSchema)
  );
}

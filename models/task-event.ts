/**
 * The `task_events` collection: the journal of state changes not yet folded into `tasks`.
 *
 * Why a journal: inserting in ordered batches is what every MongoDB-wire server does fastest, so
 * each change that must be durable before it takes effect (an assignment before it is sent, an
 * outcome before it is delivered) is one inserted document, written in the same command as the rest
 * of its tick. `tasks` follows within about a second (master/store-fold.ts), and once a task's final
 * state is in `tasks` its journal is deleted, so the journal holds only tasks in flight.
 *
 * `_id` is `<task id>#<rev>`: unique per task and revision, it is the fencing token (a second writer
 * recording the same revision of a task fails), and a task's journal is deleted by `_id`.
 */
import { Schema, type Connection, type Model } from 'mongoose';
import { TASK_STATES, type TaskState } from '../protocol/states';

export interface TaskEventDoc {
  /** `<task>#<rev>`. */
  _id: string;
  /** The task's id. */
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
  /** On a requeue that does not count as a failure: the task's count of such attempts. */
  uncounted?: number;
}

export function eventId(task: string, rev: number): string {
  return `${task}#${rev}`;
}

export const taskEventSchema = new Schema<TaskEventDoc>(
  {
    _id: { type: String, required: true },
    task: { type: String, required: true },
    rev: { type: Number, required: true },
    at: { type: Number, required: true },
    state: { type: String, enum: TASK_STATES, required: true },
    attempt: { type: Number, required: true },
    who: { type: String },
    result: { type: Schema.Types.Mixed },
    error: { type: Schema.Types.Mixed },
    moduleHash: { type: String },
    uncounted: { type: Number },
  },
  { collection: 'task_events', versionKey: false },
);

export function taskEventModel(conn: Connection): Model<TaskEventDoc> {
  return (
    (conn.models.TaskEvent as Model<TaskEventDoc> | undefined) ??
    conn.model<TaskEventDoc>('TaskEvent', taskEventSchema)
  );
}

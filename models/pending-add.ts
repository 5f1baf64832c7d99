/**
 * The `task_adds` collection: commit records of multi-task adds, as the store wrote them before an
 * add came to live whole in one journal document (models/task-journal.ts). Nothing writes here any
 * more; a master that starts and finds one deletes the tasks it lists (their add was never
 * acknowledged), so a database written by an earlier version is recovered correctly.
 */
import { Schema, type Connection, type Model } from 'mongoose';

export interface PendingAddDoc {
  _id: string;
  ids: string[];
  at: number;
}

export const pendingAddSchema = new Schema<PendingAddDoc>(
  {
    _id: { type: String, required: true },
    ids: { type: [String], required: true },
    at: { type: Number, required: true },
  },
  { collection: 'task_adds', versionKey: false },
);

export function pendingAddModel(conn: Connection): Model<PendingAddDoc> {
  return (
    (conn.models.PendingAdd as Model<PendingAddDoc> | undefined) ??
    conn.model<PendingAddDoc>('PendingAdd', pendingAddSchema)
  );
}

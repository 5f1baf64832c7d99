/**
 * The `task_adds` collection: the commit record of multi-task adds.
 *
 * Before the documents of an add of several tasks are inserted, one document listing their ids is
 * inserted here; once all of them are written it is deleted, and only then is the add acknowledged.
 * A master that starts and finds one of these deletes the tasks it lists: their add was never
 * acknowledged, so none of them may run. One record covers every add of a write (a tick), so a
 * steady stream of adds costs two small commands per write, not per add.
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

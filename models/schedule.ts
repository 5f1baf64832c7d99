/**
 * The `schedules` collection: one document per recurring schedule, `_id` = its id. `def` is the
 * definition as JSON text (normalised, so the same definition is the same text: an upsert that
 * changes nothing is recognised by comparing it); `since` is when that definition took effect (its
 * first slot is not before it); `lastSlot` the last slot fired, `nextAt` the next one (UTC, null once
 * the schedule ended), `count` the tasks created. `rev` rises with every write: each update's filter
 * holds the `rev` it read.
 */
import { Schema, type Connection, type Model } from 'mongoose';

export interface ScheduleDoc {
  _id: string;
  def: string;
  since: Date;
  nextAt: Date | null;
  lastSlot: Date | null;
  count: number;
  created: Date;
  updated: Date;
  rev: number;
}

export const scheduleSchema = new Schema<ScheduleDoc>(
  {
    _id: { type: String, required: true },
    def: { type: String, required: true },
    since: { type: Date, required: true },
    nextAt: { type: Date },
    lastSlot: { type: Date },
    count: { type: Number, required: true },
    created: { type: Date, required: true },
    updated: { type: Date, required: true },
    rev: { type: Number, required: true },
  },
  { collection: 'schedules', versionKey: false },
);

export function scheduleModel(conn: Connection): Model<ScheduleDoc> {
  return (
    (conn.models.Schedule as Model<ScheduleDoc> | undefined) ??
    conn.model<ScheduleDoc>('Schedule', scheduleSchema)
  );
}

/**
 * The `limits` collection: the rate limits and concurrency caps set at run time
 * (`PUT /api/limits/SELECTOR`), one document per selector (its `_id`), read at every activation so
 * they survive a restart and a takeover. `spec` is the text the operator gave (`20/s, 5 concurrent`,
 * or `none`), parsed again on reading (master/scheduler/limit-spec.ts): one form, one parser.
 */
import { Schema, type Connection, type Model } from 'mongoose';

export interface LimitDoc {
  /** The selector: `module:NAME`, `group:NAME` or `group:*`. */
  _id: string;
  spec: string;
  /** When it was set (epoch ms). */
  at: number;
}

export const limitSchema = new Schema<LimitDoc>(
  {
    _id: { type: String, required: true },
    spec: { type: String, required: true },
    at: { type: Number, required: true },
  },
  { collection: 'limits', versionKey: false },
);

export function limitModel(conn: Connection): Model<LimitDoc> {
  return (conn.models.Limit as Model<LimitDoc> | undefined) ?? conn.model<LimitDoc>('Limit', limitSchema);
}

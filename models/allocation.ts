/**
 * The `allocations` collection: sticky allocation of affinity keys to runners (after atributo). One
 * document per key; the unique index makes a key belong to one runner at a time.
 */
import { Schema, type Connection, type Model } from 'mongoose';

export interface AllocationDoc {
  key: string;
  runner: string;
  at: number;
}

export const allocationSchema = new Schema<AllocationDoc>(
  {
    key: { type: String, required: true },
    runner: { type: String, required: true },
    at: { type: Number, required: true },
  },
  { collection: 'allocations', versionKey: false },
);

allocationSchema.index({ key: 1 }, { unique: true });

export function allocationModel(conn: Connection): Model<AllocationDoc> {
  return (
    (conn.models.Allocation as Model<AllocationDoc> | undefined) ??
    conn.model<AllocationDoc>('Allocation', allocationSchema)
  );
}

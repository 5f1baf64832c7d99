/**
 * The stored limits (models/limit.ts): read at activation, written by the API through the store's
 * fenced collection, so a master that lost its lease changes nothing. One document per selector,
 * by `_id`: a put is one `replaceOne` with upsert, a delete one `deleteOne`; no index beyond `_id`.
 * The texts are parsed by the scheduler's limit-spec.ts, as the flag's are.
 */
import type { Collection } from 'mongoose';
import type { LimitDoc } from '../../models/limit';

/** Every stored limit, as `{ selector, spec }` texts. */
export async function loadLimits(coll: Collection<LimitDoc>): Promise<{ selector: string; spec: string }[]> {
  const docs = await coll.find({}).toArray();
  return docs.map((d) => ({ selector: String(d._id), spec: String(d.spec) }));
}

export async function saveLimit(coll: Collection<LimitDoc>, selector: string, spec: string): Promise<void> {
  await coll.replaceOne({ _id: selector }, { spec, at: Date.now() }, { upsert: true });
}

/** Whether a stored limit was deleted. */
export async function deleteLimit(coll: Collection<LimitDoc>, selector: string): Promise<boolean> {
  return (await coll.deleteOne({ _id: selector })).deletedCount > 0;
}

/**
 * Fencing: every write the store makes (the journal, the folder, retention, recovery) goes through
 * a collection that first asks the lease whether this master may still write (master/lease.ts,
 * `writable()`). A master that lost its lease, or whose renewals have not gone through within the
 * deadline, sends no write command at all: the write fails with `FencedError` before it leaves the
 * process, and the store gives up instead of retrying. Reads are not fenced.
 *
 * The check is made when the command is issued. A command issued in time that reaches the database
 * after a standby took over is covered by the margin between the holder's deadline and the lease
 * (40 % of `leaseMs`), and, for `tasks`, by the epoch in the folder's filters (master/store/fold.ts):
 * a document written by a newer epoch is never overwritten by an older one.
 */

export class FencedError extends Error {
  readonly fenced = true;
  constructor(message: string) {
    super(message);
    this.name = 'FencedError';
  }
}

export function isFenced(err: unknown): boolean {
  return (err as { fenced?: unknown } | null)?.fenced === true;
}

const WRITES = new Set([
  'insertOne',
  'insertMany',
  'updateOne',
  'updateMany',
  'replaceOne',
  'deleteOne',
  'deleteMany',
  'bulkWrite',
  'findOneAndUpdate',
  'findOneAndReplace',
  'findOneAndDelete',
  'drop',
  'createIndex',
]);

/** `coll`, whose write methods refuse (a rejected promise, nothing sent) while `writable()` is false. */
export function fenced<T extends { collectionName: string }>(coll: T, writable: () => boolean): T {
  return new Proxy(coll, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver) as unknown;
      if (typeof prop !== 'string' || !WRITES.has(prop) || typeof value !== 'function') return value;
      return (...args: unknown[]) =>
        writable()
          ? (value as (...a: unknown[]) => unknown).apply(target, args)
          : Promise.reject(
              new FencedError(
                `not written to ${target.collectionName}: this master does not hold the lease any more`,
              ),
            );
    },
  });
}

/**
 * The one loop for commands whose size would grow with a list (an `_id $in` filter, the documents of
 * an insert): the list is cut into slices, one command each, so none grows without bound however
 * many ids a recovery, a retry or a tick brings.
 */

/** Ids per `$in` filter, or documents per insert, in the commands that go through `inChunks`. */
export const IN_CHUNK = 1000;

/**
 * Calls `fn` with consecutive slices of `items`, at most `size` each, in order, one at a time: each
 * slice's promise is awaited before the next starts, so a slow database sees one command of ours at a
 * time rather than all of them at once.
 */
export async function inChunks<T>(
  items: readonly T[],
  size: number,
  fn: (chunk: T[]) => Promise<unknown>,
): Promise<void> {
  for (let i = 0; i < items.length; i += size) await fn(items.slice(i, i + size));
}

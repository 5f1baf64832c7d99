/**
 * Splits a batch into `tasks:add` messages under the master's message limit (`maxMessageBytes`,
 * checked by the transport before anything else: a larger message closes the connection).
 *
 * Input: the tasks and the limit. Output: lists of indexes, one per message, in an order where a
 * task's dependencies inside the batch are sent in the same message or an earlier one (the master
 * refuses a dependency on an id it does not know yet); or the index of a task too large to send at all.
 */

import { messageRoom } from '../protocol/limits';

export type Split = { ok: true; chunks: number[][] } | { ok: false; index: number; bytes: number };

export function splitBatch(tasks: unknown[], maxMessageBytes: number): Split {
  const room = messageRoom(maxMessageBytes);
  const sizes = tasks.map((t) => Buffer.byteLength(JSON.stringify(t) ?? '') + 1);
  const total = sizes.reduce((a, b) => a + b, 0);
  if (total <= room) return { ok: true, chunks: [tasks.map((_, i) => i)] };
  // Alone in a message, a task needs no separator.
  const tooLarge = sizes.findIndex((s) => s - 1 > room);
  if (tooLarge >= 0) return { ok: false, index: tooLarge, bytes: sizes[tooLarge] - 1 };

  const chunks: number[][] = [];
  let chunk: number[] = [];
  let bytes = 0;
  for (const i of dependencyOrder(tasks)) {
    if (chunk.length > 0 && bytes + sizes[i] > room) {
      chunks.push(chunk);
      chunk = [];
      bytes = 0;
    }
    chunk.push(i);
    bytes += sizes[i];
  }
  if (chunk.length > 0) chunks.push(chunk);
  return { ok: true, chunks };
}

/**
 * Input order, except that a task comes after the tasks of the batch it depends on (Kahn's
 * algorithm, taking the lowest index first). Tasks in a cycle keep their input order at the end:
 * the master reports the cycle.
 */
export function dependencyOrder(tasks: unknown[]): number[] {
  const byId = new Map<string, number>();
  tasks.forEach((t, i) => {
    const id = (t as { id?: unknown } | null)?.id;
    if (typeof id === 'string') byId.set(id, i);
  });
  const pending = new Array<number>(tasks.length).fill(0);
  const dependents: number[][] = tasks.map(() => []);
  tasks.forEach((t, i) => {
    const deps = (t as { dependencies?: unknown } | null)?.dependencies;
    if (!Array.isArray(deps)) return;
    for (const d of deps) {
      const j = typeof d === 'string' ? byId.get(d) : undefined;
      if (j === undefined || j === i) continue;
      pending[i]++;
      dependents[j].push(i);
    }
  });
  const order: number[] = [];
  const done = new Array<boolean>(tasks.length).fill(false);
  // Indexes whose dependencies are all placed; kept sorted so input order wins among them.
  const ready = tasks.map((_, i) => i).filter((i) => pending[i] === 0);
  for (let head = 0; head < ready.length; head++) {
    const i = ready[head];
    done[i] = true;
    order.push(i);
    for (const k of dependents[i]) if (--pending[k] === 0) insertSorted(ready, k, head + 1);
  }
  for (let i = 0; i < tasks.length; i++) if (!done[i]) order.push(i);
  return order;
}

function insertSorted(list: number[], v: number, from: number): void {
  let lo = from;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (list[mid] < v) lo = mid + 1;
    else hi = mid;
  }
  list.splice(lo, 0, v);
}

/**
 * The retry of an add, recognised by its `addKey`. A feeder that lost the answer to an add (the master
 * stopped, the connection broke) sends the same add again with the same key. Inputs: the add's raw
 * tasks and key, and what is known of each of its ids (the task in memory, or as stored). Output:
 *
 * - null: no task of the add exists with this key, so it is not a retry, and the ordinary rules apply
 *   (an id already taken refuses the add, or is skipped with `onExisting: 'skip'`);
 * - the answer of the first add: every task exists, those of this key as the add's own and (with
 *   `onExisting: 'skip'`) the others as `existing`. Nothing is stored;
 * - EVALIDATION when some tasks exist with this key and others do not: an add is stored whole or not
 *   at all, so this is not a retry of an add that was stored (tasks purged since, or another add
 *   under the same key). Adding the missing tasks could add what the first add never had, so the
 *   add is refused, naming the first task that is missing.
 *
 * A task deduplicated to a task that holds its key (master/scheduler/dedup.ts) is answered as
 * deduplicated again, as the first try answered it.
 *
 * A task without an id is never found (the master would give it a new one), so an add holding one
 * cannot be recognised: the feeder names its tasks before its first try.
 */
import { wireError } from '../../protocol/errors';
import type { AddReply, TaskRef } from '../../protocol/schemas';
import type { TaskState } from '../../protocol/states';
import { summarize } from '../validate';
import type { OnExisting } from './admission';
import type { DedupHit } from './dedup';

/** What is known of a task that exists. */
export interface KnownTask {
  state: TaskState;
  batch?: string;
  addKey?: string;
}

/** Whether this add is a retry of one stored (its answer), refused, or neither (null). */
export function replayOf(
  raw: unknown[],
  addKey: string,
  onExisting: OnExisting,
  known: (id: string) => KnownTask | undefined,
  deduped: ReadonlyMap<number, DedupHit> | null = null,
): AddReply | null {
  let batch: string | undefined;
  let mine = -1;
  let missing = -1;
  let other = false;
  const found: (KnownTask | undefined)[] = raw.map((t, i) => {
    const id = idOf(t);
    const k = id === undefined ? undefined : known(id);
    // Not stored, and deduplicated to a task that holds its key: as the first try answered it.
    if (!k && deduped?.has(i) && 'holder' in (deduped.get(i) as DedupHit)) return undefined;
    if (!k) {
      if (missing < 0) missing = i;
    } else if (k.addKey === addKey) {
      if (mine < 0) mine = i;
      batch ??= k.batch;
    } else other = true;
    return k;
  });
  if (mine < 0) return null;
  if (missing >= 0) {
    const id = idOf(raw[missing]);
    const issue = {
      path: id === undefined ? `tasks[${missing}]` : `tasks[${missing}].id`,
      message:
        `the add with addKey "${addKey}" is partly stored: task "${idOf(raw[mine]) as string}" exists with ` +
        `this key, ${id === undefined ? 'this task has no id' : `task "${id}" does not`}`,
    };
    return { ok: false, error: wireError('EVALIDATION', summarize([issue]), { issues: [issue] }) };
  }
  // The first add would have been refused for a task of another add: the ordinary refusal says so.
  if (other && onExisting === 'error') return null;
  const refs: TaskRef[] = raw.map((t, i) => {
    const hit = found[i] ? undefined : deduped?.get(i);
    if (hit && 'holder' in hit) return hit.holder;
    const id = idOf(t) as string;
    const k = found[i] as KnownTask;
    return k.addKey === addKey
      ? { id, _id: id }
      : { id, _id: id, existing: { state: k.state, batch: k.batch ?? '' } };
  });
  return { ok: true, batch: batch ?? '', tasks: refs };
}

function idOf(t: unknown): string | undefined {
  const id = t && typeof t === 'object' ? (t as { id?: unknown }).id : undefined;
  return typeof id === 'string' ? id : undefined;
}

/**
 * The keyed adds whose write is in flight. A retry that finds their tasks in memory cannot tell yet
 * whether they will be stored (the store may refuse the add), so it waits for that write's answer
 * first. Only tries of one add share a key, so this serializes nothing else.
 */
export class AddsInFlight {
  private readonly writing = new Map<string, Promise<void>>();

  /** Resolves once no add with this key is being written. */
  async idle(addKey: string): Promise<void> {
    for (let w = this.writing.get(addKey); w; w = this.writing.get(addKey)) await w;
  }

  has(addKey: string): boolean {
    return this.writing.has(addKey);
  }

  /** Marks an add's write in flight; call the function returned once its answer is handled. */
  hold(addKey: string): () => void {
    let settle!: () => void;
    const held = new Promise<void>((resolve) => (settle = resolve));
    this.writing.set(addKey, held);
    return () => {
      if (this.writing.get(addKey) === held) this.writing.delete(addKey);
      settle();
    };
  }
}

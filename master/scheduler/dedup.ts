/**
 * Deduplication: the task field `dedup: { key, ttl? }`. A key is taken while a task holding it is not
 * final and, with a ttl, until `created + ttl` (`dedup.until`, stored in the task's document). An add
 * of a task whose key is taken creates nothing: its ref names the holder (`deduplicated`). Within one
 * add, a later task with the key of an earlier one is deduplicated to it.
 *
 * Why this is atomic: the index lives in the scheduler's memory and an add's check (`match`) and its
 * tasks entering memory (`hold`) happen in one synchronous stretch (see admission), so of 100 adds
 * of one key at once exactly one finds it free. The key is durable with the task (the add's journal
 * document holds the task's document, `dedup` included), and a starting master rebuilds the index
 * from the tasks it recovers: those not final, and the final ones whose `until` has not passed
 * (`keep`), so an add just after a restart finds the key taken as one just before it did.
 *
 * Memory: a key is dropped the moment it is free: when its task becomes final without a ttl left,
 * else when its ttl ends (one wake-up each on a heap with one timer), or when its task is purged. A
 * final task inside its ttl keeps only its id, batch, state and time here, never its record.
 */
import type { TaskRef } from '../../protocol/schemas';
import { MAX_DEDUP_KEY } from '../../protocol/schemas';
import type { TaskState } from '../../protocol/states';
import type { TaskRecord } from '../task-record';
import type { KeptTask } from '../task-store';
import { Wakeups } from './wakeups';

/** A final task whose key is still taken: what a ref to it needs, not its record. */
class Kept {
  constructor(
    readonly id: string,
    readonly batch: string,
    readonly state: TaskState,
    readonly until: number,
  ) {}
}

/**
 * An item of an add whose key is taken: by a task that holds it (`holder`, the ref the item is
 * answered with), or by an earlier item of the same add (`first`, its index in the add).
 */
export type DedupHit = { holder: TaskRef } | { first: number };

export class DedupIndex {
  /** Key → the task that holds it: its record while not final, a `Kept` after. */
  private readonly holders = new Map<string, TaskRecord | Kept>();
  /** Task id → key, for the `Kept` ones (purged tasks free their keys). */
  private readonly keptIds = new Map<string, string>();
  private readonly expiry = new Wakeups<{ at: number; key: string; id: string }>((w) => this.expire(w));

  /** Keys taken now. */
  get size(): number {
    return this.holders.size;
  }

  /**
   * The items of a raw add whose key is taken, by index; null when none is (without allocating when
   * no item has a key). An item whose `dedup` is malformed is left to validation, which refuses it.
   */
  match(raw: readonly unknown[], now: number): Map<number, DedupHit> | null {
    let hits: Map<number, DedupHit> | null = null;
    let firsts: Map<string, number> | null = null;
    for (let i = 0; i < raw.length; i++) {
      const key = keyOf(raw[i]);
      if (key === undefined) continue;
      const h = this.holderOf(key, now);
      if (h) {
        (hits ??= new Map()).set(i, { holder: refOf(h) });
        continue;
      }
      const first = (firsts ??= new Map()).get(key);
      if (first === undefined) firsts.set(key, i);
      else (hits ??= new Map()).set(i, { first });
    }
    return hits;
  }

  /** The task that holds `key` now, if one does (a `Kept` whose time has passed is dropped). */
  holderOf(key: string, now: number): TaskRecord | Kept | undefined {
    const h = this.holders.get(key);
    if (h instanceof Kept && h.until <= now) {
      this.drop(key, h);
      return undefined;
    }
    return h;
  }

  /**
   * A task with a key entered memory (an add, recovery, an operator's retry): it holds its key, unless
   * another task does (a retried task whose key was taken again since), which keeps it.
   */
  hold(t: TaskRecord, now: number): void {
    if (!t.dedup) return;
    const h = this.holderOf(t.dedup.key, now);
    if (h === t) return;
    if (h instanceof Kept && h.id === t.id) this.drop(t.dedup.key, h);
    else if (h) return;
    this.holders.set(t.dedup.key, t);
  }

  /** `t` became final: its key is free now, or kept (without the record) until its `until`. */
  finished(t: TaskRecord, now: number): void {
    const d = t.dedup;
    if (!d || this.holders.get(d.key) !== t) return;
    if (d.until === undefined || d.until <= now) {
      this.holders.delete(d.key);
      return;
    }
    this.keep(d.key, new Kept(t.id, t.batch, t.state, d.until));
  }

  /** `t` left memory without becoming final (its add was refused): its key is free. */
  dropped(t: TaskRecord): void {
    if (t.dedup && this.holders.get(t.dedup.key) === t) this.holders.delete(t.dedup.key);
  }

  /** Recovery: a final task whose key is taken until its `until`, if that is still to come. */
  recovered(k: KeptTask, now: number): void {
    const until = k.dedup.until;
    if (until === undefined || until <= now || this.holderOf(k.dedup.key, now)) return;
    this.keep(k.dedup.key, new Kept(k.id, k.batch, k.state, until));
  }

  /** Purged tasks: the keys they kept are free. */
  forget(ids: readonly string[]): void {
    if (this.keptIds.size === 0) return;
    for (const id of ids) {
      const key = this.keptIds.get(id);
      const h = key === undefined ? undefined : this.holders.get(key);
      if (key !== undefined && h instanceof Kept && h.id === id) this.drop(key, h);
    }
  }

  /** Stops the timer (the master lost its lease, or closes). */
  close(): void {
    this.expiry.close();
  }

  private keep(key: string, k: Kept): void {
    this.holders.set(key, k);
    this.keptIds.set(k.id, key);
    this.expiry.push({ at: k.until, key, id: k.id });
  }

  private drop(key: string, k: Kept): void {
    this.holders.delete(key);
    if (this.keptIds.get(k.id) === key) this.keptIds.delete(k.id);
  }

  private expire(w: { at: number; key: string; id: string }): void {
    const h = this.holders.get(w.key);
    // The key may have been freed and taken again since: only this very entry goes.
    if (h instanceof Kept && h.id === w.id && h.until === w.at) this.drop(w.key, h);
  }
}

/** The ref an item deduplicated to `h` is answered with. */
export function refOf(h: { id: string; batch: string; state: TaskState }): TaskRef {
  return { id: h.id, _id: h.id, deduplicated: { state: h.state, batch: h.batch } };
}

/** An item's dedup key, if it has a well-formed one. */
function keyOf(t: unknown): string | undefined {
  if (!t || typeof t !== 'object') return undefined;
  const d = (t as { dedup?: unknown }).dedup;
  if (!d || typeof d !== 'object') return undefined;
  const key = (d as { key?: unknown }).key;
  return typeof key === 'string' && key.length > 0 && key.length <= MAX_DEDUP_KEY ? key : undefined;
}

/**
 * Keeps `tasks` current: writes each changed task's latest state into its document soon after the
 * change is durable in the journal (master/store/store.ts): a final state at once, any other state after
 * `foldDelayMs`, so that a task finishing meanwhile costs one statement.
 *
 * Inputs: live task records, each with the writer sequence of its latest change and the journal
 * documents that hold its changes. Only records whose latest change is durable are written (a
 * document must exist before it is updated). Coalescing: a record is written once however often it
 * changed, at its state at the time of writing, so a task assigned and finished between two rounds
 * costs one statement. Ordering: the filter holds the precondition `rev < new`, so an older state
 * never replaces a newer one. Journal documents whose changes are all written are then deleted.
 * The loop runs beside the writer whenever there is work (never only when it is idle, so steady load
 * cannot starve it). Bounded: above `foldBacklogLimit` waiting records, `congested` tells the
 * scheduler to hold new assignments until the folder catches up.
 */
import type { Collection } from 'mongoose';
import type { Logger } from '../../common/logger';
import { isFinal } from '../../protocol/states';
import { encodeValue } from '../../models/codec';
import type { TaskDoc } from '../../models/task';
import type { TaskRecord } from '../task-record';
import { classify, DUPLICATE_KEY, type WriteFailure } from './write-errors';
import { RetryBackoff } from './retry-backoff';

export interface FoldOptions {
  /** Statements per update command. Default 500. */
  foldChunk?: number;
  /** How long a state that is not final waits, so a newer one can replace it. Default 200 ms. */
  foldDelayMs?: number;
  /**
   * How long a new task that is not final waits before its document is inserted into `tasks`, so
   * that a task finishing meanwhile is inserted final and never updated. Default 60,000 ms.
   */
  insertDelayMs?: number;
  /**
   * New tasks waiting to be inserted above which the oldest are inserted at once, whatever their
   * age: what the folder holds of them (their documents, their journal documents) stays bounded
   * under a large add. Default 100,000.
   */
  unbornLimit?: number;
  /** Least time between the end of one round and the start of the next, unless a read waits. Default 50 ms. */
  foldGapMs?: number;
  /** Records waiting above which new assignments wait. Default 50,000. */
  foldBacklogLimit?: number;
  logger: Logger;
}

/** What the folder needs of the store. */
export interface FoldTarget {
  readonly tasks: Collection<TaskDoc>;
  /** Writer sequence number of the last durable change. */
  readonly durable: number;
  readonly isClosed: boolean;
  /** The lease epoch the store writes as (0: none). */
  readonly epoch: number;
  releaseJournal(docs: string[]): void;
  deleteFoldedJournal(): Promise<void>;
  /** A write of the folder failed (and is retried), or null: one went through. */
  folderFailed(f: WriteFailure | null): void;
}

interface Pending {
  /** The task's record, once it changed after its add (a new task may have none yet). */
  t?: TaskRecord;
  /** A new task's document, as added, while `tasks` does not have it yet: inserted, not updated. */
  base?: TaskDoc;
  /** Writer sequence of the latest change: written only once the writer is past it. */
  seq: number;
  /**
   * The task's newest revision that may be written: durable in the journal (or a running state,
   * which only `tasks` holds). A record whose revision is past it has a change on its way to the
   * journal, which comes back here once durable: it waits for it, so `tasks` never holds a state
   * the journal does not, and the task is not written twice.
   */
  rev: number;
  /** When the oldest change not yet written was made. */
  since: number;
  /** Journal documents holding its changes, with the revision of each. */
  refs: [string, number][];
}

export const INSERT_DELAY_MS = 60_000;
export const UNBORN_LIMIT = 100_000;
export const FOLD_GAP_MS = 50;

/** Folds the journal into `tasks` (the store's `folder`): the loop the header describes. */
export class JournalFolder {
  private pending = new Map<string, Pending>();
  /*
   * Every entry of `pending` is in one of two queues, each in the order of `since` (an entry whose
   * `since` moves goes to the back): new tasks (`base`) and the others. So a round reads only the
   * ripe fronts of the queues and the final ones, never every entry: a drain of 50,000 queued tasks
   * holds 50,000 new ones that are not ripe, and a round every 50 ms scanned them all.
   */
  private unbornQueue = new Set<Pending>();
  private changedQueue = new Set<Pending>();
  /** Entries whose record became final (written at once, whatever their age); may hold some that are no longer. */
  private finals = new Set<Pending>();
  /** How many of `pending` are new tasks not in `tasks` yet (they do not count as congestion). */
  private unbornCount = 0;
  /** Reads waiting for the new tasks to be in `tasks` (`insertUnbornNow`). */
  private unbornWaiters: (() => void)[] = [];
  private running: Promise<void> | null = null;
  private timer: NodeJS.Timeout | null = null;
  private gapTimer: NodeJS.Timeout | null = null;
  /** When the last round ended (performance.now()). */
  private lastRound = -Infinity;
  private closed = false;
  /** Recent lags of final states: from the outcome to its `tasks` document (ms). */
  readonly lags: number[] = [];
  readonly counters = { commands: 0, documents: 0 };
  /** Called when the backlog falls back under the limit. */
  onRelieved: () => void = () => {};

  constructor(
    private readonly store: FoldTarget,
    private readonly opts: FoldOptions,
  ) {}

  /** A change of `t` (durable at writer sequence `seq`), held in journal document `ref` if any. */
  add(t: TaskRecord, seq: number, ref?: [string, number]): void {
    if (this.closed) return;
    let p = this.pending.get(t.id);
    // From the writer: the journal holds the change at ref's revision; from `fold` (a running state)
    // or a recovery (seq 0, durable already): the record as it is.
    const rev = ref && seq > 0 ? ref[1] : t.rev;
    if (!p) {
      this.pending.set(t.id, (p = { t, seq, rev, since: Date.now(), refs: [] }));
      this.changedQueue.add(p);
    } else {
      p.t = t;
      p.seq = Math.max(p.seq, seq);
      p.rev = Math.max(p.rev, rev);
    }
    if (isFinal(t.state)) this.finals.add(p);
    if (ref) p.refs.push(ref);
    this.kick();
  }

  /** A new task, durable in journal document `journalDoc` at writer sequence `seq`. */
  addUnborn(doc: TaskDoc, seq: number, journalDoc: string): void {
    if (this.closed) return;
    let p = this.pending.get(doc._id);
    if (!p) this.pending.set(doc._id, (p = { seq, rev: 0, since: Date.now(), refs: [] }));
    else p.seq = Math.max(p.seq, seq);
    if (!p.base) {
      this.unbornCount++;
      this.changedQueue.delete(p);
      this.unbornQueue.add(p);
    }
    p.base = doc;
    p.refs.push([journalDoc, 0]);
    this.kick();
  }

  /** A new task's document, as added, while `tasks` does not have it yet. */
  unbornDoc(id: string): TaskDoc | undefined {
    return this.pending.get(id)?.base;
  }

  /** Whether a task of this id is durable but not in `tasks` yet. */
  unborn(id: string): boolean {
    return this.pending.get(id)?.base !== undefined;
  }

  /** Forgets a task (its add was refused); returns the journal documents it held changes in. */
  drop(id: string, t?: TaskRecord): string[] {
    const p = this.pending.get(id);
    // Another task's changes under that id (an add refused because its id was taken by it).
    if (p && t && p.t !== t) return [];
    if (!p) return [];
    this.forget(id, p);
    return p.refs.map(([doc]) => doc);
  }

  /** The record of a task whose latest state is not in `tasks` yet. */
  pendingRecord(id: string): TaskRecord | undefined {
    return this.pending.get(id)?.t;
  }

  get backlog(): number {
    return this.pending.size;
  }

  get congested(): boolean {
    return this.pending.size - this.unbornCount > (this.opts.foldBacklogLimit ?? 50_000);
  }

  /**
   * How late the oldest write into `tasks` is: a change from when it was made, a new task that is
   * not final from when its insert is due (it waits in the journal by design until then).
   */
  oldestAgeMs(): number {
    // The fronts of the queues are their oldest; a final new task counts from its change.
    let oldest = Infinity;
    for (const p of this.changedQueue) {
      oldest = p.since;
      break;
    }
    for (const p of this.unbornQueue) {
      oldest = Math.min(oldest, p.since + (this.opts.insertDelayMs ?? INSERT_DELAY_MS));
      break;
    }
    for (const p of this.finals) if (p.t && isFinal(p.t.state)) oldest = Math.min(oldest, p.since);
    return oldest === Infinity ? 0 : Math.max(0, Date.now() - oldest);
  }

  /** p50/p99/max of recent lags of final states behind their outcome. */
  lagSummary(): { p50: number; p99: number; max: number } | null {
    if (this.lags.length === 0) return null;
    const s = [...this.lags].sort((a, b) => a - b);
    const at = (p: number) => s[Math.min(s.length - 1, Math.floor(p * s.length))];
    return { p50: at(0.5), p99: at(0.99), max: s[s.length - 1] };
  }

  kick(): void {
    if (this.running || this.closed) return;
    // Rounds at most every `foldGapMs`, unless a read waits: under light load each write of the
    // writer would otherwise start a round of its own, and each round is a commit (and an fsync)
    // that the writer's next journal insert may have to wait behind.
    const wait = this.lastRound + (this.opts.foldGapMs ?? FOLD_GAP_MS) - performance.now();
    if (wait > 0 && this.unbornWaiters.length === 0) {
      this.gapTimer ??= setTimeout(() => {
        this.gapTimer = null;
        this.kick();
      }, wait);
      this.gapTimer.unref();
      return;
    }
    this.running = this.loop(false).finally(() => {
      this.running = null;
      this.lastRound = performance.now();
      // A read that asked while the last round was deciding to stop: answer it now.
      if (this.unbornWaiters.length > 0) this.kick();
      else this.later();
    });
  }

  /** Writes everything durable now, whatever its age (tests, shutdown). */
  async settled(): Promise<void> {
    while (this.running) await this.running;
    await this.loop(true);
  }

  /**
   * Inserts now the new tasks durable but not in `tasks` yet, whatever their age (reads through the
   * master). The loop takes them first in its next round, so a read waits for at most the round in
   * flight and this one, never for the loop to run out of work under load.
   */
  insertUnbornNow(): Promise<void> {
    if (this.unbornCount === 0 || this.closed) return Promise.resolve();
    return new Promise((resolve) => {
      this.unbornWaiters.push(resolve);
      this.kick();
    });
  }

  /** The lease is lost: nothing more is written (master/store/store.ts `abandon`). */
  abandon(): void {
    this.closed = true;
    this.pending.clear();
    this.unbornQueue.clear();
    this.changedQueue.clear();
    this.finals.clear();
    for (const w of this.unbornWaiters.splice(0)) w();
    if (this.timer) clearTimeout(this.timer);
    if (this.gapTimer) clearTimeout(this.gapTimer);
    this.timer = null;
  }

  async close(): Promise<void> {
    await this.settled();
    this.closed = true;
    for (const w of this.unbornWaiters.splice(0)) w();
    if (this.timer) clearTimeout(this.timer);
    if (this.gapTimer) clearTimeout(this.gapTimer);
  }

  /** Changes that are not ripe yet (running states younger than the delay) get a later round. */
  private later(): void {
    if (this.timer || this.closed || this.pending.size === 0) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.kick();
    }, this.opts.foldDelayMs ?? 200);
    this.timer.unref();
  }

  /**
   * What the next round writes, at most `foldChunk` entries of those durable: when reads wait, new
   * tasks first; then final states (written at once); other changes older than `foldDelayMs`; new
   * tasks older than `insertDelayMs` (so that one finishing meanwhile is inserted final), and beyond
   * `unbornLimit` waiting, the oldest new tasks whatever their age. `all`: everything durable.
   */
  private pick(all: boolean): { chunk: Pending[]; answered: (() => void)[] } {
    const durable = this.store.durable;
    const limit = this.opts.foldChunk ?? 500;
    const chunk: Pending[] = [];
    const taken = new Set<Pending>();
    /**
     * `now`: a new task, its document durable since its add, written at its state as it is, even if
     * a newer change is still on its way to the journal.
     */
    const take = (p: Pending, now = false): boolean => {
      if (taken.has(p)) return false;
      if (!now && p.seq > durable) return false;
      if (!now && !all && p.t && p.t.rev > p.rev) return false; // its newer change is on its way
      chunk.push(p);
      taken.add(p);
      return true;
    };
    let answered: (() => void)[] = [];
    if (all) {
      for (const p of this.pending.values()) {
        if (chunk.length >= limit) break;
        take(p);
      }
      return { chunk, answered };
    }
    // Reads are waiting (insertUnbornNow): every durable new task first, whatever its age and even
    // with a change on its way (a read must find every acknowledged task; the change follows). They
    // are answered after the round that writes the last of them.
    if (this.unbornWaiters.length > 0) {
      for (const p of this.unbornQueue) {
        if (chunk.length >= limit) break;
        take(p, true);
      }
      if (chunk.length < limit) answered = this.unbornWaiters.splice(0);
    }
    for (const p of this.finals) {
      if (chunk.length >= limit) break;
      if (p.t && isFinal(p.t.state)) take(p);
      else this.finals.delete(p); // run again since
    }
    const before = Date.now() - (this.opts.foldDelayMs ?? 200);
    for (const p of this.changedQueue) {
      if (chunk.length >= limit || p.since > before) break;
      take(p);
    }
    const beforeInsert = Date.now() - (this.opts.insertDelayMs ?? INSERT_DELAY_MS);
    // New tasks beyond the limit are inserted whatever their age, the oldest first.
    let crowd = this.unbornCount - (this.opts.unbornLimit ?? UNBORN_LIMIT);
    for (const p of this.unbornQueue) {
      if (chunk.length >= limit) break;
      if (p.since <= beforeInsert) take(p);
      else if (crowd <= 0) break;
      else if (take(p)) crowd--;
    }
    return { chunk, answered };
  }

  private async loop(all: boolean): Promise<void> {
    const backoff = new RetryBackoff();
    for (;;) {
      const wasCongested = this.congested;
      const { chunk, answered } = this.pick(all);
      if (chunk.length === 0) {
        for (const w of answered) w();
        return;
      }
      try {
        await this.write(chunk);
        backoff.reset();
        this.store.folderFailed(null);
        for (const w of answered) w();
        // Less than a full chunk: no backlog, so the round ends, and the next one starts at least
        // `foldGapMs` later with what finished meanwhile. Under light load each task's outcome would
        // otherwise be a command of its own.
        if (!all && chunk.length < (this.opts.foldChunk ?? 500) && this.unbornWaiters.length === 0) {
          if (wasCongested && !this.congested) this.onRelieved();
          return;
        }
      } catch (err) {
        if (this.closed || this.store.isClosed) {
          for (const w of answered) w(); // nothing more will be written
          return;
        }
        this.unbornWaiters.push(...answered); // asked again next round
        const f = classify(err);
        this.store.folderFailed(f);
        await backoff.wait((wait) =>
          this.opts.logger.warn('writing states into tasks failed; retrying', {
            error: f.message,
            retryInMs: wait,
          }),
        );
      }
      if (wasCongested && !this.congested) this.onRelieved();
    }
  }

  private async write(chunk: Pending[]): Promise<void> {
    const now = Date.now();
    const snaps = chunk.map((p) => ({ p, t: p.t, base: p.base, rev: p.t?.rev ?? 0 }));
    const born = snaps.filter((x) => x.base);
    const changed = snaps.filter((x) => !x.base) as { p: Pending; t: TaskRecord; rev: number }[];
    const epoch = this.store.epoch;
    if (born.length > 0)
      await this.insert(
        born.map(({ base, t }) => {
          const d = bornDoc(base as TaskDoc, t, now);
          return epoch > 0 ? { ...d, epoch } : d;
        }),
      );
    if (changed.length > 0) await this.update(changed, now);
    this.counters.commands += (born.length > 0 ? 1 : 0) + (changed.length > 0 ? 1 : 0);
    this.counters.documents += snaps.length;
    const done = Date.now();
    const folded: string[] = [];
    for (const { p, t, base, rev } of snaps) {
      // Journal parts up to the written revision are in `tasks` now.
      const left: [string, number][] = [];
      for (const ref of p.refs) {
        if (ref[1] <= rev) folded.push(ref[0]);
        else left.push(ref);
      }
      p.refs = left;
      const id = p.t?.id ?? (base as TaskDoc)._id;
      if (this.pending.get(id) !== p) continue;
      if (base && p.base === base) {
        p.base = undefined;
        this.unbornCount--;
        this.unbornQueue.delete(p);
      }
      if (p.t === t && (t?.rev ?? 0) === rev) {
        this.forget(id, p);
        if (t && isFinal(t.state) && t.finishedAt) this.recordLag(done - t.finishedAt);
      } else {
        // Changed while the write was in flight: written again, at the back of its queue.
        p.since = now;
        const queue = p.base ? this.unbornQueue : this.changedQueue;
        queue.delete(p);
        queue.add(p);
      }
    }
    this.store.releaseJournal(folded);
    await this.store.deleteFoldedJournal();
  }

  /**
   * Inserts new tasks' documents. One the server refuses: an id already taken (which the add's check
   * makes all but impossible) is logged and left; any other refusal is stored as an EPERSIST failure.
   */
  private async insert(docs: TaskDoc[]): Promise<void> {
    try {
      await this.store.tasks.insertMany(docs as never[], { ordered: false });
      return;
    } catch (err) {
      if (classify(err).kind === 'transient') throw err;
    }
    for (const d of docs) {
      await this.store.tasks.insertOne(d as never).catch(async (e: unknown) => {
        const f = classify(e);
        if (f.kind === 'transient') throw e;
        if (f.code === DUPLICATE_KEY) return this.insertedBefore(d);
        this.opts.logger.error('tasks refused a new task; stored as EPERSIST', { taskId: d._id });
        await this.store.tasks
          .insertOne({
            ...d,
            params: [],
            result: null,
            requires: null,
            state: 'failed',
            error: { code: 'EPERSIST', message: f.message },
          } as never)
          .catch((again: unknown) => {
            if (classify(again).kind === 'transient') throw again;
          });
      });
    }
  }

  /**
   * A new task's document met one of its id. Most often it is this very insert, sent before and
   * written, whose answer was lost (a replica set's failover, a timeout): that document may hold an
   * older state than `d`, and the journal holding the newer one is deleted once this write is done,
   * so it is brought to `d` unless it holds a newer state. A document of another task (another batch
   * or creation time; the add's check makes that all but impossible) is left as it is, and logged.
   */
  private async insertedBefore(d: TaskDoc): Promise<void> {
    const same = { _id: d._id, batch: d.batch, created: d.created };
    const { matchedCount } = await this.store.tasks.replaceOne({ ...same, rev: { $lt: d.rev ?? 0 } }, d);
    if (matchedCount > 0 || (await this.store.tasks.findOne(same, { projection: { _id: 1 } }))) return;
    this.opts.logger.error("a new task's id was taken in tasks meanwhile; its document is not stored", {
      taskId: d._id,
    });
  }

  private async update(snaps: { p: Pending; t: TaskRecord; rev: number }[], now: number): Promise<void> {
    // Never over a newer epoch's write: a deposed master's late update matches nothing.
    const epoch = this.store.epoch;
    const fence = epoch > 0 ? { epoch: { $not: { $gt: epoch } } } : {};
    const all = snaps.map(({ t, rev }) => ({
      updateOne: {
        filter: { _id: t.id, rev: { $lt: rev }, ...fence },
        update: { $set: epoch > 0 ? { ...stateFields(t, now), epoch } : stateFields(t, now) },
      },
    }));
    try {
      await this.store.tasks.bulkWrite(all as never[], { ordered: false });
    } catch (err) {
      if (classify(err).kind === 'transient') throw err;
      // Values the journal took but `tasks` refuses: one by one, a refused one as a bare failure.
      for (const [k, { t, rev }] of snaps.entries()) {
        const one = all[k];
        await this.store.tasks.bulkWrite([one] as never[]).catch(async (e: unknown) => {
          if (classify(e).kind === 'transient') throw e;
          this.opts.logger.error('tasks refused a state; stored as EPERSIST', { taskId: t.id });
          await this.store.tasks.updateOne(
            { _id: t.id, rev: { $lt: rev }, ...fence },
            { $set: { state: 'failed', rev, updated: now, error: { code: 'EPERSIST', message: String(e) } } },
          );
        });
      }
    }
  }

  private forget(id: string, p: Pending): void {
    this.pending.delete(id);
    if (p.base) this.unbornCount--;
    this.unbornQueue.delete(p);
    this.changedQueue.delete(p);
    this.finals.delete(p);
  }

  private recordLag(ms: number): void {
    this.lags.push(ms);
    if (this.lags.length > 20_000) this.lags.splice(0, 10_000);
  }
}

/** A new task's document as `tasks` first gets it: as added, with its state now. */
export function bornDoc(base: TaskDoc, t: TaskRecord | undefined, now: number): TaskDoc {
  if (!t) return base;
  const d: Record<string, unknown> = { ...base };
  writeState(t, now, d, true);
  return d as unknown as TaskDoc;
}

/** The `$set` that makes a `tasks` document show the record's current state. */
export function stateFields(t: TaskRecord, now: number): Record<string, unknown> {
  const set: Record<string, unknown> = {};
  writeState(t, now, set, false);
  return set;
}

/**
 * Writes the record's current state into `into`: `assigned`'s fields as `assigned.x` paths for a
 * `$set`, or (`whole`, a document written whole) as an `assigned` object of those set, if any.
 */
function writeState(t: TaskRecord, now: number, into: Record<string, unknown>, whole: boolean): void {
  into.state = t.state;
  into.rev = t.rev;
  into.attempts = t.attempts;
  into.updated = now;
  const final = isFinal(t.state);
  if (!whole) {
    into['assigned.who'] = t.who;
    into['assigned.when'] = t.assignedAt;
    if (final) into['assigned.completed'] = t.finishedAt ?? now;
  } else if (t.who != null || t.assignedAt != null || final) {
    const assigned: Record<string, unknown> = {};
    if (t.who != null) assigned.who = t.who;
    if (t.assignedAt != null) assigned.when = t.assignedAt;
    if (final) assigned.completed = t.finishedAt ?? now;
    into.assigned = assigned;
  }
  if (t.error) into.error = t.stored ? t.stored.error : storable(t.error);
  if (t.uncounted) into.uncounted = t.uncounted;
  // Every change to ready says whether it waits out a backoff, so no earlier one is left standing.
  if (t.state === 'ready') into.retryAt = t.retryAt ?? null;
  if (final) {
    if (t.moduleHash) into.moduleHash = t.moduleHash;
    if (t.state === 'done') {
      into.result = t.stored ? t.stored.result : encodeOrNull(t.result);
      into.error = null;
    }
  }
}

function encodeOrNull(v: unknown): unknown {
  try {
    return encodeValue(v === undefined ? null : v);
  } catch {
    return null; // cannot happen for a value that came through the journal
  }
}

function storable(e: NonNullable<TaskRecord['error']>): unknown {
  if (e.details === undefined) return e;
  try {
    return { ...e, details: encodeValue(e.details) };
  } catch {
    return { code: e.code, message: e.message };
  }
}

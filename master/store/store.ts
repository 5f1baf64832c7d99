/**
 * Write-through persistence. Inputs, in the order the scheduler makes them: the task documents of an
 * add, task records whose state changed, affinity allocations. Outputs: a few bulk commands per tick,
 * and `barrier()` promises that resolve once everything enqueued before them is durable.
 *
 * Group commit: one writer loop takes everything queued while its previous write was in flight and
 * writes it together as one journal document (models/task-journal.ts): the documents of every add
 * and the new state of every task that changed, whatever their number; one command, one commit.
 * An add lives whole in one journal document, so it is durable all or nothing. Before that, one
 * `_id $in` read refuses adds whose ids a stored task has (new ids find nothing, which costs the
 * database no document to decode). A change that must be durable before it takes effect (an
 * assignment before it is sent, an outcome before it is delivered, a requeue) waits for that write,
 * and nothing longer.
 * `tasks` follows a moment later: the folder (master/store/fold.ts) inserts a new task's document
 * once it is final or after `insertDelayMs`, and writes each other change's latest state, one
 * statement per task however often it changed, with the precondition `rev < new`; it deletes
 * journal documents once all they hold is in `tasks`.
 * Failures (master/store/write-errors.ts): a transient one is retried with backoff, while the master keeps
 * serving from memory and reports the backlog; a refused document fails only its own task with
 * EPERSIST (its add is refused, or its change is replaced by the failure) and every other write goes
 * on. Retention and purge live in master/store/retention.ts; recovery and look-ups in
 * master/store/recovery.ts.
 */
import { Types, type Collection, type Connection } from 'mongoose';
import type { Logger } from '../../common/logger';
import { TimeSlice } from '../../common/time-slice';
import { wireError, type WireError } from '../../protocol/errors';
import { allocationModel, type AllocationDoc } from '../../models/allocation';
import { limitModel, type LimitDoc } from '../../models/limit';
import { encodeValue, UnstorableValueError } from '../../models/codec';
import { pendingAddModel } from '../../models/pending-add';
import { taskModel, type TaskDoc } from '../../models/task';
import { journalModel, type JournalChange, type JournalDoc } from '../../models/task-journal';
import { JournalFolder, type FoldOptions } from './fold';
import { inChunks, IN_CHUNK } from './in-chunks';
import { RetryBackoff } from './retry-backoff';
import { encodeError, fetchStates, loadForRecovery, type ReadTarget, type Recovered } from './recovery';
import type { TaskRecord } from '../task-record';
import { classify, DUPLICATE_KEY, type WriteFailure } from './write-errors';
import { fenced, FencedError, isFenced } from './fence';

import type { AddWriteResult, RefusalListener, StoredState } from '../task-store';

interface AddEntry {
  kind: 'add';
  docs: TaskDoc[];
  /** The ids to look up (chosen by the feeder); undefined: all of them. */
  given?: string[];
  /** The look-up of `given` in `tasks`, started when the add was queued: the stored ids among them. */
  stored?: Promise<string[]>;
  /** Those of `given` durable in the journal but not in `tasks` when the add was queued. */
  unborn?: string[];
  refusal?: { id: string; error: WireError; taken?: boolean };
  /** `done` was called. */
  answered?: boolean;
  done: (r: AddWriteResult) => void;
}
type Entry =
  | AddEntry
  | { kind: 'state'; t: TaskRecord }
  | { kind: 'alloc'; doc: AllocationDoc }
  | { kind: 'dealloc'; key: string };

export interface StoreOptions extends FoldOptions {
  /** Documents per insert command. */
  writeChunk: number;
  logger: Logger;
  /**
   * The lease epoch this master writes as (master/lease.ts): in journal documents, and in `tasks`
   * documents, whose updates never overwrite a newer epoch's. 0 without an election (tools, tests).
   */
  epoch?: number;
  /** Whether this master may write now (master/store/fence.ts); always, when not given. */
  writable?: () => boolean;
}

const NOT_ACTIVE =
  'this master lost its lease before the add was stored: add it again (the same addKey) to the active master';

export const STORE_DEFAULTS = { writeChunk: 1000 };

export class Store {
  readonly tasks: Collection<TaskDoc>;
  readonly journal: Collection<JournalDoc>;
  readonly allocations: Collection<AllocationDoc>;
  /** Limits set at run time (master/store/limits.ts). */
  readonly limits: Collection<LimitDoc>;
  readonly pendingAdds: Collection<{ _id: string; ids: string[]; at: number }>;
  readonly folder: JournalFolder;
  /** The lease epoch this store writes as. */
  readonly epoch: number;
  /** Resolves once the lease is lost and nothing more is written (`abandon`). */
  readonly abandoned: Promise<void>;
  private markAbandoned: () => void = () => {};
  /** The lease was lost: nothing is written any more (`abandon`). */
  private fenced = false;
  /** Set by the scheduler: a task's new state was refused and replaced by a failure. */
  onRefused: RefusalListener = () => {};
  /** See TaskStore.beforeWrite: the scheduler's distribution pass due on this tick. */
  beforeWrite?: () => void;
  /** Told how long each write took, in ms (metrics). */
  onWritten: (ms: number) => void = () => {};
  private queue: Entry[] = [];
  private waiters: (() => void)[] = [];
  private running = false;
  private closed = false;
  private seq = 0;
  private durableSeq = 0;
  private retrying = false;
  /** Sequence of the write in progress: what its changes become durable as. */
  private writing = 0;
  private readonly journalPrefix = `${new Types.ObjectId().toHexString()}-`;
  private journalSeq = 0;
  /** Journal documents and how many of their changes are not in `tasks` yet. */
  private journalRefs = new Map<string, number>();
  private journalFolded: string[] = [];
  /** Id look-ups of adds queued this tick (`lookUp`). */
  private lookups: { ids: string[]; resolve: (ids: string[]) => void; reject: (err: unknown) => void }[] = [];
  /** Database commands and documents written, for status and benchmarks. */
  readonly counters = { commands: 0, documents: 0, refused: 0, retries: 0 };
  /** Tasks of adds queued or in flight: not durable yet, so not acknowledged (bounded by admission). */
  private unwrittenTasks = 0;
  /** When the write in flight began (performance.now()), 0 when none is. */
  private writeBegan = 0;
  /** The writer's and the folder's last failures since their last success. */
  private failures: { writer: Failing | null; folder: Failing | null } = { writer: null, folder: null };

  constructor(
    conn: Connection,
    private readonly opts: StoreOptions,
  ) {
    // Every write asks the lease first: a deposed master sends none.
    const writable = opts.writable ?? (() => true);
    const fence = <T extends { collectionName: string }>(c: unknown) => fenced(c as T, writable);
    this.tasks = fence<Collection<TaskDoc>>(taskModel(conn).collection);
    this.journal = fence<Collection<JournalDoc>>(journalModel(conn).collection);
    this.allocations = fence<Collection<AllocationDoc>>(allocationModel(conn).collection);
    this.limits = fence<Collection<LimitDoc>>(limitModel(conn).collection);
    this.pendingAdds = fence<Collection<{ _id: string; ids: string[]; at: number }>>(
      pendingAddModel(conn).collection,
    );
    this.epoch = opts.epoch ?? 0;
    this.abandoned = new Promise((resolve) => (this.markAbandoned = resolve));
    this.folder = new JournalFolder(this, opts);
  }

  // ---- writes ------------------------------------------------------------------------------------

  /**
   * Encodes an add's documents for storage; refuses the add (before anything changes) when a value
   * cannot be stored at all.
   */
  prepareTasks(docs: TaskDoc[]): { docs: TaskDoc[] } | { id: string; error: WireError } {
    const out: TaskDoc[] = [];
    for (const d of docs) {
      try {
        out.push(encodeTask(d));
      } catch (err) {
        return { id: d._id, error: persistError(d._id, err) };
      }
    }
    return { docs: out };
  }

  /**
   * Queues an add's documents (from `prepareTasks`); resolves once they are all durable, or refused.
   * `given`: the ids to look up in `tasks` (the feeder's; generated ones are new); all when absent.
   */
  insertTasks(docs: TaskDoc[], given?: string[]): Promise<AddWriteResult> {
    // The look-up starts now, beside the write in flight, so the add's own write rarely waits for it.
    const ids = given ?? docs.map((d) => d._id);
    // It only fails once the store is closed, when the add cannot be written either.
    const stored = ids.length > 0 ? this.lookUp(ids).catch(() => [] as string[]) : undefined;
    // Durable but not in `tasks` yet, now: the folder may insert one after the look-up has read
    // and before this add is written, when neither would see it.
    const unborn = ids.filter((id) => this.folder.unborn(id));
    this.unwrittenTasks += docs.length;
    return new Promise((done) =>
      this.push({
        kind: 'add',
        docs,
        given,
        stored,
        unborn,
        done: (r) => {
          this.unwrittenTasks -= docs.length;
          done(r);
        },
      }),
    );
  }

  /**
   * Queues a task's changed state; its document shows it once the write is done (`barrier()`).
   * Returns an EPERSIST error instead when its values (a result) cannot be stored: the caller must
   * fail the task with it, and that failure is what gets written.
   */
  update(t: TaskRecord): WireError | null {
    let refused: WireError | null = null;
    if (t.state === 'done' || t.error?.details !== undefined) {
      try {
        t.stored = {
          result: t.state === 'done' ? encodeValue(t.result ?? null) : undefined,
          error: encodeError(t.error),
        };
      } catch (err) {
        refused = persistError(t.id, err);
      }
    } else t.stored = undefined;
    if (!refused) this.push({ kind: 'state', t });
    return refused;
  }

  /** Records that an affinity key now belongs to a runner (ordered with everything else). */
  allocate(doc: AllocationDoc): void {
    this.push({ kind: 'alloc', doc });
  }

  deallocate(key: string): void {
    this.push({ kind: 'dealloc', key });
  }

  /** Brings the task's document up to its current state soon; nobody waits for it (master/store/fold.ts). */
  fold(t: TaskRecord): void {
    if (!this.closed) this.folder.add(t, this.seq);
  }

  /**
   * Forgets a task whose add was refused: nothing of it is in the database. Another task of that id
   * (the one that made the add be refused, durable but not yet in `tasks`) stays as it is.
   */
  forget(t: TaskRecord): void {
    this.releaseJournal(this.folder.drop(t.id, t));
  }

  /** Journal changes now in `tasks`: a journal document whose changes all are can go. */
  releaseJournal(docs: string[]): void {
    for (const id of docs) {
      const left = (this.journalRefs.get(id) ?? 1) - 1;
      if (left > 0) this.journalRefs.set(id, left);
      else {
        this.journalRefs.delete(id);
        this.journalFolded.push(id);
      }
    }
  }

  /** Deletes the journal documents whose changes are all in `tasks`. */
  async deleteFoldedJournal(): Promise<void> {
    const ids = this.journalFolded;
    this.journalFolded = [];
    await inChunks(ids, IN_CHUNK, (chunk) =>
      this.retry('write', () => this.journal.deleteMany({ _id: { $in: chunk } })),
    );
  }

  /** A recovered task's journal changes, to be folded into `tasks` like new ones. */
  adoptJournal(t: TaskRecord, refs: [string, number][]): void {
    for (const [doc, rev] of refs) this.folder.add(t, 0, [doc, rev]);
  }

  /** Resolves once everything enqueued so far is durably written. */
  barrier(): Promise<void> {
    if (this.queue.length === 0 && !this.running) return Promise.resolve();
    return new Promise((resolve) => {
      this.waiters.push(resolve);
      this.kick();
    });
  }

  /** Tasks of adds not durable yet (admission refuses adds beyond `writeBacklogLimit` of them). */
  get unwritten(): number {
    return this.unwrittenTasks;
  }

  /**
   * Why writes are not going through, if they are not: a failure retried since (`disk full`, a lost
   * connection), or a write the database has not answered for `stallMs` (a server frozen). Null
   * while writes succeed.
   */
  trouble(stallMs = 5000): { cause: string; error: string; sinceMs: number } | null {
    const f = this.failures.writer ?? this.failures.folder;
    if (f)
      return { cause: f.cause ?? 'database write failing', error: f.message, sinceMs: Date.now() - f.since };
    const waited = this.writeBegan > 0 ? performance.now() - this.writeBegan : 0;
    if (waited >= stallMs)
      return {
        cause: 'database not answering',
        error: `a write has waited ${Math.round(waited)} ms for the database`,
        sinceMs: Math.round(waited),
      };
    return null;
  }

  /** The folder reports its failures and successes (status, readiness). */
  folderFailed(f: WriteFailure | null): void {
    this.failures.folder = f ? failing(this.failures.folder, f) : null;
  }

  /** Sequence number of the last change known durable (the folder only writes what is). */
  get durable(): number {
    return this.durableSeq;
  }

  /** What status and health show of the writer. */
  status(): {
    writeBacklog: number;
    unwrittenTasks: number;
    retrying: boolean;
    trouble: { cause: string; error: string; sinceMs: number } | null;
    foldBacklog: number;
    oldestUnfoldedMs: number;
    lag: { p50: number; p99: number; max: number } | null;
    commands: number;
    documents: number;
  } {
    return {
      writeBacklog: this.queue.length,
      unwrittenTasks: this.unwrittenTasks,
      retrying: this.retrying,
      trouble: this.trouble(),
      foldBacklog: this.folder.backlog,
      oldestUnfoldedMs: this.folder.oldestAgeMs(),
      lag: this.folder.lagSummary(),
      commands: this.counters.commands + this.folder.counters.commands,
      documents: this.counters.documents + this.folder.counters.documents,
    };
  }

  async close(): Promise<void> {
    await this.barrier();
    await this.folder.close();
    this.closed = true;
  }

  /**
   * This master lost its lease: nothing more is written, and nothing queued is. Adds waiting for
   * their write are refused (the feeder adds them again to the active master, with the same key);
   * every other waiter is left waiting, so nothing that needed a write is ever sent.
   */
  abandon(): void {
    if (this.fenced) return;
    this.fenced = true;
    this.markAbandoned();
    this.closed = true;
    for (const e of this.queue)
      if (e.kind === 'add') e.done({ ok: false, id: '', error: wireError('ESTANDBY', NOT_ACTIVE) });
    this.queue = [];
    this.waiters = [];
    this.folder.abandon();
  }

  /** Whether `close()` finished: nothing is written any more. */
  get isClosed(): boolean {
    return this.closed;
  }

  private push(e: Entry): void {
    if (this.closed) {
      // Changes made after close (a runner timing out during shutdown) are not written: the
      // database keeps the state as of close, and the next start recovers from it.
      if (!this.fenced) this.opts.logger.warn('write after close dropped', { kind: e.kind });
      if (e.kind === 'add')
        e.done({ ok: false, id: '', error: wireError('EPERSIST', 'the master is closing') });
      return;
    }
    this.queue.push(e);
    this.seq++;
    this.kick();
  }

  private kick(): void {
    if (this.running) return;
    this.running = true;
    // Let the current tick finish enqueueing, so one tick's changes go out as one write.
    setImmediate(() =>
      this.drain().catch((err: unknown) => {
        // Fenced (the lease is lost) or closed with a write failing: nothing more is written.
        if (!isFenced(err)) this.opts.logger.error('the store stopped writing', { error: String(err) });
        this.abandon();
      }),
    );
  }

  private async drain(): Promise<void> {
    try {
      while (this.queue.length > 0) {
        this.beforeWrite?.();
        const batch = this.queue;
        const waiters = this.waiters;
        const upTo = this.seq;
        this.queue = [];
        this.waiters = [];
        this.writing = upTo;
        const began = performance.now();
        this.writeBegan = began;
        try {
          await this.write(batch);
        } catch (err) {
          // Fenced, or closed with a write failing: the adds of this write are not stored.
          const why = isFenced(err) ? NOT_ACTIVE : `the master is closing: ${String(err)}`;
          for (const e of batch)
            if (e.kind === 'add' && !e.answered)
              e.done({ ok: false, id: '', error: wireError(isFenced(err) ? 'ESTANDBY' : 'EPERSIST', why) });
          throw err;
        } finally {
          this.writeBegan = 0;
        }
        this.onWritten(performance.now() - began);
        this.durableSeq = upTo;
        this.folder.kick();
        for (const w of waiters) w();
      }
      const waiters = this.waiters;
      this.waiters = [];
      for (const w of waiters) w();
    } finally {
      this.running = false;
      if (this.queue.length > 0 || this.waiters.length > 0) this.kick();
    }
  }

  private async write(batch: Entry[]): Promise<void> {
    const adds = batch.filter((e): e is AddEntry => e.kind === 'add');
    if (adds.length > 0) await this.checkIds(adds);
    const live = adds.filter((a) => !a.refusal);
    const gone = new Set(adds.filter((a) => a.refusal).flatMap((a) => a.docs.map((d) => d._id)));
    const changed = new Map<string, TaskRecord>();
    for (const e of batch) if (e.kind === 'state' && !gone.has(e.t.id)) changed.set(e.t.id, e.t);
    if (live.length > 0 || changed.size > 0) await this.writeJournal(live, [...changed.values()]);
    for (const a of adds) {
      if (a.refusal) this.counters.refused++;
      a.answered = true;
      a.done(a.refusal ? { ok: false, ...a.refusal } : { ok: true });
    }
    // Allocations in their own order: a key deallocated and allocated again in one tick.
    let i = 0;
    while (i < batch.length) {
      const e = batch[i];
      if (e.kind === 'alloc') {
        const docs: AllocationDoc[] = [];
        while (i < batch.length && batch[i].kind === 'alloc')
          docs.push((batch[i++] as { doc: AllocationDoc }).doc);
        await this.insertAll(this.allocations as unknown as Collection<{ _id?: string }>, docs as never[], {
          refused: (doc, f) => {
            this.opts.logger.warn('allocation not stored', {
              key: (doc as AllocationDoc).key,
              reason: f.message,
            });
            return null;
          },
        });
      } else if (e.kind === 'dealloc') {
        const keys: string[] = [];
        while (i < batch.length && batch[i].kind === 'dealloc')
          keys.push((batch[i++] as { key: string }).key);
        await this.retry('write', () => this.allocations.deleteMany({ key: { $in: keys } }));
      } else i++;
    }
  }

  /**
   * Refuses the adds whose ids are taken: by a stored task (one `_id $in` read of the ids the feeder
   * chose, started when the add was queued, which finds nothing for new ids, so the database decodes
   * no document; none when every id was generated here) or by one whose document the folder has yet
   * to insert. Ids in memory were refused by the scheduler already. Such a refusal says `taken`: an
   * add with an `addKey` may be a retry of the add that stored them, which the scheduler then tells
   * by looking its ids up (master/scheduler/add-key.ts), so an add of new ids costs no more here.
   */
  private async checkIds(adds: AddEntry[]): Promise<void> {
    const owner = new Map<string, AddEntry>();
    for (const a of adds) for (const d of a.docs) owner.set(d._id, a);
    const taken = (id: string) => {
      const a = owner.get(id);
      if (a && !a.refusal)
        a.refusal = { id, error: wireError('EVALIDATION', `id "${id}" is already taken`), taken: true };
    };
    for (const id of owner.keys()) if (this.folder.unborn(id)) taken(id);
    for (const a of adds) for (const id of a.unborn ?? []) taken(id);
    for (const a of adds) for (const id of (await a.stored) ?? []) taken(id);
  }

  /**
   * Which of these ids `tasks` holds. The look-ups of one tick go out together: one `_id $in` read
   * per 1,000 ids, through transient failures.
   */
  private lookUp(ids: string[]): Promise<string[]> {
    return new Promise((resolve, reject) => {
      this.lookups.push({ ids, resolve, reject });
      if (this.lookups.length === 1) setImmediate(() => void this.runLookups());
    });
  }

  private async runLookups(): Promise<void> {
    const batch = this.lookups;
    this.lookups = [];
    try {
      const found = new Set<string>();
      const ids = batch.flatMap((l) => l.ids);
      await inChunks(ids, IN_CHUNK, async (chunk) => {
        const docs = await this.retry('read', () =>
          this.tasks.find({ _id: { $in: chunk } }, { projection: { _id: 1 } }).toArray(),
        );
        for (const d of docs ?? []) found.add(d._id);
      });
      for (const l of batch) l.resolve(l.ids.filter((id) => found.has(id)));
    } catch (err) {
      for (const l of batch) l.reject(err);
    }
  }

  /**
   * One journal document (or a few, for very many or very large parts) holding the documents of
   * every add of this write and the state of every changed task now. An add is never split across
   * documents, so it is written whole or not at all. A document the server refuses is split into one
   * per part; an add refused alone is refused with EPERSIST, a change refused alone is replaced by
   * its task's failure with EPERSIST.
   */
  private async writeJournal(adds: AddEntry[], changed: TaskRecord[]): Promise<void> {
    const now = Date.now();
    const byId = new Map(changed.map((t) => [t.id, t]));
    const refused: [TaskRecord, WireError][] = [];
    const fail = (c: JournalChange, why: string): string => {
      const error = wireError('EPERSIST', `task "${c.id}": the database refused its state: ${why}`);
      refused.push([byId.get(c.id) as TaskRecord, error]);
      this.counters.refused++;
      this.opts.logger.error('task state refused; the task fails with EPERSIST', {
        taskId: c.id,
        reason: why,
      });
      return JSON.stringify({ ...c, state: 'failed', result: undefined, error });
    };
    const refuseAdd = (a: AddEntry, why: string) => {
      // Named by its largest document: the likeliest reason the server refused it.
      let id = a.docs[0]?._id ?? '';
      let most = -1;
      for (const d of a.docs) {
        const size = jsonSize(d);
        if (size > most) [id, most] = [d._id, size];
      }
      a.refusal = { id, error: wireError('EPERSIST', `task "${id}": the database refused it: ${why}`) };
    };
    const parts: Part[] = [];
    // A cancel or a retry of tens of thousands of tasks changes them all in one write: their JSON is
    // made in time slices, with the event loop free between them.
    const slice = new TimeSlice();
    for (const a of adds) {
      if (slice.due()) await slice.pause();
      try {
        parts.push({ add: a, text: a.docs.map((d) => JSON.stringify(d)).join(',') });
      } catch (err) {
        refuseAdd(a, String(err));
      }
    }
    for (const t of changed) {
      if (slice.due()) await slice.pause();
      const c = snapshot(t);
      let text: string;
      try {
        text = JSON.stringify(c);
      } catch (err) {
        text = fail(c, String(err)); // too deep for JSON
      }
      parts.push({ change: c, text });
    }
    // In documents of at most 4 MB and `writeChunk` parts (an add larger than that alone in one).
    const docs: Sheet[] = [];
    let bytes = Infinity;
    for (const part of parts) {
      const last = docs[docs.length - 1];
      if (!last || bytes + part.text.length > 4 * 1024 * 1024 || last.parts.length >= this.opts.writeChunk) {
        docs.push(sheet(this.nextJournalId(), now, [], this.epoch));
        bytes = 0;
      }
      docs[docs.length - 1].parts.push(part);
      bytes += part.text.length;
    }
    const split: Sheet[] = [];
    const written: Sheet[] = [];
    const alone = (d: Sheet, f: WriteFailure): Sheet | null => {
      const part = d.parts[0];
      if (part.add) {
        refuseAdd(part.add, f.message);
        return null;
      }
      const c = part.change as JournalChange;
      return sheet(d._id, now, [{ change: c, text: fail(c, f.message) }], this.epoch);
    };
    const toWrite = docs.map(seal);
    await this.insertAll(this.journal, toWrite.map(bare), {
      refused: (doc, f) => {
        const d = toWrite.find((x) => x._id === doc._id) as Sheet;
        if (d.parts.length > 1) {
          split.push(d);
          return null;
        }
        const instead = alone(d, f);
        if (!instead) return null;
        toWrite[toWrite.indexOf(d)] = instead;
        return bare(instead);
      },
      written: (doc) => written.push(toWrite.find((x) => x._id === doc._id) as Sheet),
    });
    for (const d of split) {
      const singles = d.parts.map((part) => sheet(this.nextJournalId(), now, [part], this.epoch));
      await this.insertAll(this.journal, singles.map(bare), {
        refused: (doc, f) => {
          const i = singles.findIndex((x) => x._id === doc._id);
          const instead = alone(singles[i], f);
          if (!instead) return null;
          singles[i] = instead;
          return bare(instead);
        },
        written: (doc) => written.push(singles.find((x) => x._id === doc._id) as Sheet),
      });
    }
    for (const d of written) {
      // Between journal documents only: a change is not ripe for the folder before this write is
      // durable, so none of a document's changes can be folded before its count of refs is set.
      if (slice.due()) await slice.pause();
      let refs = 0;
      for (const part of d.parts) {
        if (part.add) {
          for (const doc of part.add.docs) this.folder.addUnborn(doc, this.writing, d._id);
          refs += part.add.docs.length;
        } else if (part.change) {
          const t = byId.get(part.change.id);
          if (t) this.folder.add(t, this.writing, [d._id, part.change.rev]);
          refs++;
        }
      }
      this.journalRefs.set(d._id, refs);
    }
    for (const [t, error] of refused) this.onRefused(t, error);
  }

  private nextJournalId(): string {
    return `${this.journalPrefix}${(++this.journalSeq).toString(36).padStart(8, '0')}`;
  }

  /**
   * Inserts `docs` in order, in chunks, through transient failures. `refused(doc)` decides what
   * happens to a document the server refuses: a replacement to insert instead, or null to skip it.
   */
  private async insertAll<D extends { _id?: unknown }>(
    coll: Collection<D>,
    docs: D[],
    how: {
      refused: (d: D, f: WriteFailure) => D | null;
      /** Each document once it is written (or found written by an earlier try). */
      written?: (d: D) => void;
    },
  ): Promise<void> {
    const tried = new Set<D>();
    let limit = this.opts.writeChunk;
    const backoff = new RetryBackoff();
    let i = 0;
    while (i < docs.length) {
      const chunk = docs.slice(i, i + limit);
      try {
        await coll.insertMany(chunk as never[], { ordered: true });
        this.counters.commands++;
        this.counters.documents += chunk.length;
        if (how.written) for (const d of chunk) how.written(d);
        i += chunk.length;
        backoff.reset();
        limit = this.opts.writeChunk;
        this.succeeded();
        continue;
      } catch (err) {
        this.counters.commands++;
        const f = classify(err);
        const at = f.index ?? (f.kind === 'refused' && chunk.length === 1 ? 0 : undefined);
        if (f.kind === 'refused' && at !== undefined) {
          const bad = chunk[at];
          const pos = i + at;
          this.counters.documents += f.written;
          if (how.written) for (let k = 0; k < at; k++) how.written(chunk[k]);
          if (f.code === DUPLICATE_KEY && tried.has(bad)) {
            how.written?.(bad);
            i = pos + 1; // written by an earlier try whose answer was lost
            continue;
          }
          const replacement = how.refused(bad, f);
          if (replacement) docs[pos] = replacement;
          i = replacement ? pos : pos + 1;
          continue;
        }
        if (f.kind === 'refused') {
          // Refused as a whole without naming a document: split until it is one.
          limit = Math.max(1, Math.floor(chunk.length / 2));
          continue;
        }
        for (const d of chunk) tried.add(d);
        // Skip what the failed command did write (an ordered insert stops at the failure).
        const done = Math.min(f.written, chunk.length);
        if (how.written) for (let k = 0; k < done; k++) how.written(chunk[k]);
        i += done;
        await this.pause(backoff, f);
      }
    }
  }

  /** Runs one command (a read, or a write other than an insert) through transient failures. */
  private async retry<T>(kind: 'read' | 'write', op: () => Promise<T>): Promise<T | undefined> {
    const backoff = new RetryBackoff();
    for (;;) {
      try {
        const r = await op();
        this.counters.commands++;
        this.succeeded(kind);
        return r;
      } catch (err) {
        const f = classify(err);
        if (f.kind === 'refused') {
          this.opts.logger.error('database command refused', { error: f.message });
          return undefined;
        }
        await this.pause(backoff, f, kind);
      }
    }
  }

  /**
   * A command went through. An insert ends any failure; a read or another write ends only a failure
   * of its own kind: on a full disk reads and deletes still succeed while inserts fail.
   */
  private succeeded(kind: 'insert' | 'read' | 'write' = 'insert'): void {
    const f = this.failures.writer;
    if (f && kind !== 'insert' && f.kind !== kind) return;
    this.retrying = false;
    if (this.failures.writer) {
      this.opts.logger.info('database writes go through again', {
        after: this.failures.writer.cause ?? this.failures.writer.message,
        failingMs: Date.now() - this.failures.writer.since,
      });
      this.failures.writer = null;
    }
  }

  private async pause(
    backoff: RetryBackoff,
    f: WriteFailure,
    kind: Failing['kind'] = 'insert',
  ): Promise<void> {
    // After close nothing can succeed any more, nor once the lease is lost: give up, not retry forever.
    if (f.fenced) throw new FencedError(f.message);
    if (this.closed) throw new Error(`store closed with a write failing: ${f.message}`);
    this.retrying = true;
    const first = this.failures.writer === null;
    // A failing insert stays the failure until an insert goes through.
    const prev = this.failures.writer;
    this.failures.writer = { ...failing(prev, f), kind: prev?.kind === 'insert' ? 'insert' : kind };
    if (first && f.cause)
      this.opts.logger.error(`database writes failing: ${f.cause}; they wait and are retried`, {
        error: f.message,
      });
    this.counters.retries++;
    await backoff.wait((wait, failures) => {
      if (failures === 1 || failures % 10 === 0)
        this.opts.logger.error('database write failed; retrying', {
          error: f.message,
          failures,
          retryInMs: wait,
        });
    });
  }

  // ---- reads -------------------------------------------------------------------------------------

  async loadAllocations(): Promise<AllocationDoc[]> {
    return (await this.allocations.find({}).toArray()) as unknown as AllocationDoc[];
  }

  /**
   * What a starting master needs: every task not final in `tasks`, with the latest journal change
   * newer than its document (master/store/recovery.ts).
   */
  loadForRecovery(): Promise<Recovered> {
    return loadForRecovery(this.reads());
  }

  /** States of these tasks (final or not) as stored; unknown ids are absent. */
  fetchStates(ids: string[]): Promise<Map<string, StoredState>> {
    return fetchStates(this.reads(), ids);
  }

  private reads(): ReadTarget {
    return {
      tasks: this.tasks,
      journal: this.journal,
      pendingAdds: this.pendingAdds,
      folder: this.folder,
      logger: this.opts.logger,
      keepJournal: (id, live) => {
        if (live > 0) this.journalRefs.set(id, live);
        else this.journalFolded.push(id);
      },
      deleteFoldedJournal: () => this.deleteFoldedJournal(),
    };
  }
}

interface Failing {
  since: number;
  message: string;
  cause?: string;
  /** What failed: an insert (the writer's own), another write, a read. */
  kind?: 'insert' | 'read' | 'write';
}

/** The failure now, keeping when the run of failures began. */
function failing(prev: Failing | null, f: WriteFailure): Failing {
  return { since: prev?.since ?? Date.now(), message: f.message, cause: f.cause };
}

function jsonSize(v: unknown): number {
  try {
    return JSON.stringify(v)?.length ?? 0;
  } catch {
    return Infinity; // the value JSON refused
  }
}

function persistError(task: string, err: unknown): WireError {
  const why = err instanceof UnstorableValueError ? err.message : String(err);
  return wireError('EPERSIST', `task "${task}": ${why}`);
}

/** A task's whole state now, as the journal holds it (as JSON text: values as they are). */
function snapshot(t: TaskRecord): JournalChange {
  const c: JournalChange = { id: t.id, rev: t.rev, state: t.state, attempts: t.attempts };
  if (t.who) c.who = t.who;
  if (t.assignedAt) c.when = t.assignedAt;
  if (t.finishedAt) c.completed = t.finishedAt;
  if (t.state === 'done') c.result = t.result ?? null;
  if (t.error) c.error = t.error;
  if (t.moduleHash) c.moduleHash = t.moduleHash;
  if (t.uncounted) c.uncounted = t.uncounted;
  if (t.retryAt && t.state === 'ready') c.retryAt = t.retryAt;
  return c;
}

/** What one journal document holds before it is written: adds (their documents) and changes. */
interface Part {
  add?: AddEntry;
  change?: JournalChange;
  /** JSON text: a change, or an add's documents separated by commas. */
  text: string;
}
type Sheet = JournalDoc & { parts: Part[] };

function sheet(id: string, at: number, parts: Part[], epoch = 0): Sheet {
  return seal({ _id: id, at, n: 0, changes: '', parts, ...(epoch > 0 ? { epoch } : {}) });
}

function seal(d: Sheet): Sheet {
  const changes = d.parts.filter((p) => p.change);
  const adds = d.parts.filter((p) => p.add && p.text.length > 0);
  d.n = changes.length;
  d.changes = `[${changes.map((p) => p.text).join(',')}]`;
  if (adds.length > 0) d.adds = `[${adds.map((p) => p.text).join(',')}]`;
  else delete d.adds;
  return d;
}

function bare(d: JournalDoc): JournalDoc {
  const out: JournalDoc = { _id: d._id, at: d.at, n: d.n, changes: d.changes };
  if (d.epoch) out.epoch = d.epoch;
  if (d.adds) out.adds = d.adds;
  return out;
}

function encodeTask(d: TaskDoc): TaskDoc {
  const out: TaskDoc = { ...d, params: encodeValue(d.params) as unknown[] };
  if (d.requires) out.requires = encodeValue(d.requires) as Record<string, unknown>;
  return out;
}

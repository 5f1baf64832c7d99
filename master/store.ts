/**
 * Write-through persistence. Inputs, in the order the scheduler makes them: the task documents of an
 * add, task records whose state changed, affinity allocations. Outputs: a few bulk commands per tick,
 * and `barrier()` promises that resolve once everything enqueued before them is durable.
 *
 * Group commit: one writer loop takes everything queued while its previous write was in flight and
 * writes it together: one ordered insert of the new tasks, then one journal document holding the
 * new state of every task that changed (models/task-journal.ts), whatever their number. A change
 * that must be durable before it takes effect (an assignment before it is sent, an outcome before it
 * is delivered, a requeue) waits for that write, and nothing longer. Adds go first in a write, so the
 * journal never holds a task the database lacks.
 * `tasks` follows a moment later: the folder (master/store-fold.ts) writes each changed task's
 * latest state, one statement per task however often it changed, with the precondition
 * `rev < new`, and deletes journal documents once all their changes are in `tasks`.
 * All-or-nothing adds: the ids of multi-task adds are recorded in `task_adds` before their documents
 * and that record is deleted after them (models/pending-add.ts); an add is acknowledged only then.
 * Failures (master/write-errors.ts): a transient one is retried with backoff, while the master keeps
 * serving from memory and reports the backlog; a refused document fails only its own task with
 * EPERSIST (its add is refused, or its change is replaced by the failure) and every other write goes
 * on. Retention and purge live in master/retention.ts.
 */
import { Types, type Collection, type Connection } from 'mongoose';
import { backoffDelay } from '../common/backoff';
import type { Logger } from '../common/logger';
import { wireError, type WireError } from '../protocol/errors';
import { FINAL_STATES } from '../protocol/states';
import { allocationModel, type AllocationDoc } from '../models/allocation';
import { decodeValue, encodeValue, UnstorableValueError } from '../models/codec';
import { pendingAddModel } from '../models/pending-add';
import { taskModel, type TaskDoc } from '../models/task';
import { journalModel, type JournalChange, type JournalDoc } from '../models/task-journal';
import { Folder, type FoldOptions } from './store-fold';
import type { TaskRecord } from './task-record';
import { classify, DUPLICATE_KEY, type WriteFailure } from './write-errors';

/** A task's state as the database knows it (look-ups of tasks not in memory). */
export interface StoredState {
  id: string;
  batch: string;
  state: TaskDoc['state'];
  attempts: number;
  rev: number;
  result?: unknown;
  error?: TaskDoc['error'];
  who?: string | null;
  moduleHash?: string | null;
}

export type AddWriteResult = { ok: true } | { ok: false; id: string; error: WireError };

/** Called when the server refused a task's new state: it was replaced by an EPERSIST failure. */
export type RefusalListener = (t: TaskRecord, error: WireError) => void;

interface AddEntry {
  kind: 'add';
  docs: TaskDoc[];
  refusal?: { id: string; error: WireError };
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
}

export const STORE_DEFAULTS = { writeChunk: 1000 };

export class Store {
  readonly tasks: Collection<TaskDoc>;
  readonly journal: Collection<JournalDoc>;
  readonly allocations: Collection<AllocationDoc>;
  readonly pendingAdds: Collection<{ _id: string; ids: string[]; at: number }>;
  readonly folder: Folder;
  /** Set by the scheduler: a task's new state was refused and replaced by a failure. */
  onRefused: RefusalListener = () => {};
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
  private markers = 0;
  /** Database commands and documents written, for status and benchmarks. */
  readonly counters = { commands: 0, documents: 0, refused: 0, retries: 0 };

  constructor(
    conn: Connection,
    private readonly opts: StoreOptions,
  ) {
    this.tasks = taskModel(conn).collection as unknown as Collection<TaskDoc>;
    this.journal = journalModel(conn).collection as unknown as Collection<JournalDoc>;
    this.allocations = allocationModel(conn).collection as unknown as Collection<AllocationDoc>;
    this.pendingAdds = pendingAddModel(conn).collection as unknown as Collection<{
      _id: string;
      ids: string[];
      at: number;
    }>;
    this.folder = new Folder(this, opts);
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

  /** Queues an add's documents (from `prepareTasks`); resolves once they are all durable, or refused. */
  insertTasks(docs: TaskDoc[]): Promise<AddWriteResult> {
    return new Promise((done) => this.push({ kind: 'add', docs, done }));
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

  /** Brings the task's document up to its current state soon; nobody waits for it (master/store-fold.ts). */
  fold(t: TaskRecord): void {
    if (!this.closed) this.folder.add(t, this.seq);
  }

  /** Forgets a task whose add was refused: nothing of it is in the database. */
  forget(id: string): void {
    this.releaseJournal(this.folder.drop(id));
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
    for (let i = 0; i < ids.length; i += 1000) {
      const chunk = ids.slice(i, i + 1000);
      await this.retry(() => this.journal.deleteMany({ _id: { $in: chunk } }));
    }
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

  /** Sequence number of the last change known durable (the folder only writes what is). */
  get durable(): number {
    return this.durableSeq;
  }

  /** What status and health show of the writer. */
  status(): {
    writeBacklog: number;
    retrying: boolean;
    foldBacklog: number;
    oldestUnfoldedMs: number;
    lag: { p50: number; p99: number; max: number } | null;
    commands: number;
    documents: number;
  } {
    return {
      writeBacklog: this.queue.length,
      retrying: this.retrying,
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

  /** Whether `close()` finished: nothing is written any more. */
  get isClosed(): boolean {
    return this.closed;
  }

  private push(e: Entry): void {
    if (this.closed) {
      // Changes made after close (a runner timing out during shutdown) are not written: the
      // database keeps the state as of close, and the next start recovers from it.
      this.opts.logger.warn('write after close dropped', { kind: e.kind });
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
    setImmediate(() => void this.drain());
  }

  private async drain(): Promise<void> {
    try {
      while (this.queue.length > 0) {
        const batch = this.queue;
        const waiters = this.waiters;
        const upTo = this.seq;
        this.queue = [];
        this.waiters = [];
        this.writing = upTo;
        const began = performance.now();
        await this.write(batch);
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
    if (adds.length > 0) await this.writeAdds(adds);
    const changed = new Map<string, TaskRecord>();
    for (const e of batch) if (e.kind === 'state') changed.set(e.t.id, e.t);
    if (changed.size > 0) await this.writeJournal([...changed.values()]);
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
        await this.retry(() => this.allocations.deleteMany({ key: { $in: keys } }));
      } else i++;
    }
  }

  private async writeAdds(adds: AddEntry[]): Promise<void> {
    const multi = adds.filter((a) => a.docs.length > 1);
    const marker = multi.length > 0 ? `${this.journalPrefix}${++this.markers}` : null;
    if (marker) {
      const ids = multi.flatMap((a) => a.docs.map((d) => d._id));
      await this.retry(() => this.pendingAdds.insertOne({ _id: marker, ids, at: Date.now() }));
    }
    const owner = new Map<TaskDoc, AddEntry>();
    for (const a of adds) for (const d of a.docs) owner.set(d, a);
    await this.insertAll(
      this.tasks,
      adds.flatMap((a) => a.docs),
      {
        live: (d) => !owner.get(d)?.refusal,
        refused: (d, f) => {
          const a = owner.get(d) as AddEntry;
          a.refusal = {
            id: d._id,
            error:
              f.code === DUPLICATE_KEY
                ? wireError('EVALIDATION', `id "${d._id}" is already taken`)
                : wireError('EPERSIST', `task "${d._id}": the database refused it: ${f.message}`),
          };
          return null;
        },
      },
    );
    // A refused add leaves nothing: remove what of it was written.
    const undo = adds.filter((a) => a.refusal && a.docs.length > 1).flatMap((a) => a.docs.map((d) => d._id));
    for (let i = 0; i < undo.length; i += 1000) {
      const ids = undo.slice(i, i + 1000);
      await this.retry(() => this.tasks.deleteMany({ _id: { $in: ids } }));
    }
    if (marker) await this.retry(() => this.pendingAdds.deleteOne({ _id: marker }));
    for (const a of adds) {
      if (a.refusal) this.counters.refused++;
      a.done(a.refusal ? { ok: false, ...a.refusal } : { ok: true });
    }
  }

  /**
   * One journal document (or a few, for very many or very large changes) with the state of every
   * changed task now. A document the server refuses is split into one per change; a change refused
   * alone is replaced by its task's failure with EPERSIST.
   */
  private async writeJournal(changed: TaskRecord[]): Promise<void> {
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
    // Each change as JSON text, in documents of at most 4 MB and `writeChunk` changes.
    const docs: (JournalDoc & { parts: [JournalChange, string][] })[] = [];
    let bytes = Infinity;
    for (const t of changed) {
      const c = snapshot(t);
      let text: string;
      try {
        text = JSON.stringify(c);
      } catch (err) {
        text = fail(c, String(err)); // too deep for JSON
      }
      const last = docs[docs.length - 1];
      if (!last || bytes + text.length > 4 * 1024 * 1024 || last.parts.length >= this.opts.writeChunk) {
        docs.push({ _id: this.nextJournalId(), at: now, n: 0, changes: '', parts: [] });
        bytes = 0;
      }
      docs[docs.length - 1].parts.push([c, text]);
      bytes += text.length;
    }
    const seal = (d: JournalDoc & { parts: [JournalChange, string][] }) => {
      d.n = d.parts.length;
      d.changes = `[${d.parts.map(([, text]) => text).join(',')}]`;
      return d;
    };
    const split: (JournalDoc & { parts: [JournalChange, string][] })[] = [];
    const written: (JournalDoc & { parts: [JournalChange, string][] })[] = [];
    const alone = (d: JournalDoc & { parts: [JournalChange, string][] }, f: WriteFailure) =>
      seal({ ...d, parts: [[d.parts[0][0], fail(d.parts[0][0], f.message)]] });
    const toWrite = docs.map(seal);
    // The documents themselves are sent without their parts.
    await this.insertAll(this.journal, toWrite.map(bare), {
      refused: (doc, f) => {
        const d = toWrite.find((x) => x._id === doc._id) as (typeof toWrite)[number];
        if (d.parts.length === 1) return bare(alone(d, f));
        split.push(d);
        return null;
      },
      written: (doc) => written.push(toWrite.find((x) => x._id === doc._id) ?? (doc as never)),
    });
    for (const d of split) {
      const singles = d.parts.map((part) =>
        seal({ _id: this.nextJournalId(), at: now, n: 1, changes: '', parts: [part] }),
      );
      await this.insertAll(this.journal, singles.map(bare), {
        refused: (doc, f) =>
          bare(alone(singles.find((x) => x._id === doc._id) as (typeof singles)[number], f)),
        written: (doc) => written.push(singles.find((x) => x._id === doc._id) as (typeof singles)[number]),
      });
    }
    for (const d of written) {
      this.journalRefs.set(d._id, d.parts.length);
      for (const [c] of d.parts) {
        const t = byId.get(c.id);
        if (t) this.folder.add(t, this.writing, [d._id, c.rev]);
      }
    }
    for (const [t, error] of refused) this.onRefused(t, error);
  }

  private nextJournalId(): string {
    return `${this.journalPrefix}${(++this.journalSeq).toString(36).padStart(8, '0')}`;
  }

  /**
   * Inserts `docs` in order, in chunks, through transient failures. `refused(doc)` decides what
   * happens to a document the server refuses: a replacement to insert instead, or null to skip it.
   * `live(doc)` false skips a document not yet sent (its add was refused meanwhile).
   */
  private async insertAll<D extends { _id?: unknown }>(
    coll: Collection<D>,
    docs: D[],
    how: {
      live?: (d: D) => boolean;
      refused: (d: D, f: WriteFailure) => D | null;
      /** Each document once it is written (or found written by an earlier try). */
      written?: (d: D) => void;
    },
  ): Promise<void> {
    const tried = new Set<D>();
    let limit = this.opts.writeChunk;
    let failures = 0;
    let i = 0;
    while (i < docs.length) {
      const chunk: D[] = [];
      for (let j = i; j < docs.length && chunk.length < limit; j++)
        if (!how.live || how.live(docs[j])) chunk.push(docs[j]);
      const end = chunk.length > 0 ? docs.indexOf(chunk[chunk.length - 1], i) + 1 : docs.length;
      if (chunk.length === 0) {
        i = end;
        continue;
      }
      try {
        await coll.insertMany(chunk as never[], { ordered: true });
        this.counters.commands++;
        this.counters.documents += chunk.length;
        if (how.written) for (const d of chunk) how.written(d);
        i = end;
        failures = 0;
        limit = this.opts.writeChunk;
        this.retrying = false;
        continue;
      } catch (err) {
        this.counters.commands++;
        const f = classify(err);
        const at = f.index ?? (f.kind === 'refused' && chunk.length === 1 ? 0 : undefined);
        if (f.kind === 'refused' && at !== undefined) {
          const bad = chunk[at];
          const pos = docs.indexOf(bad, i);
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
        for (let k = 0; k < f.written && i < docs.length; k++) {
          how.written?.(chunk[k]);
          i = docs.indexOf(chunk[k], i) + 1;
        }
        await this.pause(++failures, f);
      }
    }
  }

  /** Runs one command through transient failures. */
  private async retry<T>(op: () => Promise<T>): Promise<T | undefined> {
    let failures = 0;
    for (;;) {
      try {
        const r = await op();
        this.counters.commands++;
        this.retrying = false;
        return r;
      } catch (err) {
        const f = classify(err);
        if (f.kind === 'refused') {
          this.opts.logger.error('database command refused', { error: f.message });
          return undefined;
        }
        await this.pause(++failures, f);
      }
    }
  }

  private async pause(failures: number, f: WriteFailure): Promise<void> {
    // After close nothing can succeed any more: give up rather than retry forever.
    if (this.closed) throw new Error(`store closed with a write failing: ${f.message}`);
    this.retrying = true;
    this.counters.retries++;
    const wait = backoffDelay(failures - 1, { base: 100, cap: 5000 });
    if (failures === 1 || failures % 10 === 0)
      this.opts.logger.error('database write failed; retrying', {
        error: f.message,
        failures,
        retryInMs: wait,
      });
    await new Promise((r) => setTimeout(r, wait));
  }

  // ---- reads -------------------------------------------------------------------------------------

  async loadAllocations(): Promise<AllocationDoc[]> {
    return (await this.allocations.find({}).toArray()) as unknown as AllocationDoc[];
  }

  /**
   * What a starting master needs: every task not final in `tasks`, with the latest journal change
   * newer than its document. Adds that were never acknowledged are removed first; journal documents
   * with nothing newer than `tasks` are deleted.
   */
  async loadForRecovery(): Promise<{
    docs: TaskDoc[];
    journal: Map<string, { change: JournalChange; refs: [string, number][] }>;
    dropped: number;
  }> {
    let dropped = 0;
    for (const m of await this.pendingAdds.find({}).toArray()) {
      for (let i = 0; i < m.ids.length; i += 1000) {
        const r = await this.tasks.deleteMany({ _id: { $in: m.ids.slice(i, i + 1000) } });
        dropped += r.deletedCount;
      }
      await this.pendingAdds.deleteOne({ _id: m._id });
    }
    const docs = ((await this.tasks.find({ state: { $nin: [...FINAL_STATES] } }).toArray()) as TaskDoc[]).map(
      decodeTask,
    );
    const open = new Map(docs.map((d) => [d._id, d]));
    const journal = new Map<string, { change: JournalChange; refs: [string, number][] }>();
    for (const j of await this.journal.find({}).toArray()) {
      let live = 0;
      for (const c of JSON.parse(j.changes) as JournalChange[]) {
        const d = open.get(c.id);
        if (!d || c.rev <= d.rev) continue; // already in `tasks`, or a task that is gone
        live++;
        const cur = journal.get(c.id);
        const change = c;
        if (!cur) journal.set(c.id, { change, refs: [[j._id, c.rev]] });
        else {
          if (c.rev > cur.change.rev) cur.change = change;
          cur.refs.push([j._id, c.rev]);
        }
      }
      if (live > 0) this.journalRefs.set(j._id, live);
      else this.journalFolded.push(j._id);
    }
    await this.deleteFoldedJournal();
    return { docs, journal, dropped };
  }

  /** States of these tasks (final or not) as stored; unknown ids are absent. */
  async fetchStates(ids: string[]): Promise<Map<string, StoredState>> {
    const states = new Map<string, StoredState>();
    for (let i = 0; i < ids.length; i += 1000) {
      const docs = (await this.tasks
        .find({ _id: { $in: ids.slice(i, i + 1000) } }, { projection: { params: 0 } })
        .toArray()) as TaskDoc[];
      for (const raw of docs) {
        const d = decodeTask(raw);
        states.set(d._id, {
          id: d._id,
          batch: d.batch,
          state: d.state,
          attempts: d.attempts ?? 0,
          rev: d.rev ?? 0,
          result: d.result,
          error: d.error ?? null,
          who: d.assigned?.who ?? null,
          moduleHash: d.moduleHash ?? null,
        });
      }
    }
    // A state `tasks` does not show yet is newer than the document.
    for (const [id, s] of states) {
      const t = this.folder.pendingRecord(id);
      if (t && t.rev > s.rev)
        states.set(id, {
          ...s,
          state: t.state,
          attempts: t.attempts,
          rev: t.rev,
          result: t.result,
          error: t.error,
        });
    }
    return states;
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
  return c;
}

function bare(d: JournalDoc): JournalDoc {
  return { _id: d._id, at: d.at, n: d.n, changes: d.changes };
}

function encodeError(e: TaskRecord['error']): unknown {
  if (!e || e.details === undefined) return e ?? null;
  return { ...e, details: encodeValue(e.details) };
}

function encodeTask(d: TaskDoc): TaskDoc {
  const out: TaskDoc = { ...d, params: encodeValue(d.params) as unknown[] };
  if (d.requires) out.requires = encodeValue(d.requires) as Record<string, unknown>;
  return out;
}

export function decodeTask(d: TaskDoc): TaskDoc {
  return {
    ...d,
    params: (decodeValue(d.params) as unknown[]) ?? [],
    result: decodeValue(d.result),
    requires: d.requires ? (decodeValue(d.requires) as Record<string, unknown>) : d.requires,
    error: d.error ? { ...d.error, details: decodeValue(d.error.details) } : d.error,
  };
}

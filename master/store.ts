/**
 * Write-through persistence. Inputs: task documents to insert (on add) and journal events (on every
 * state change), in the order the scheduler made them. Output: ordered bulk writes, one batch per
 * tick, and `barrier()` promises that resolve once everything enqueued before them is durable.
 *
 * Ordering: a single writer loop drains the queue front to back, task inserts before the events that
 * follow them, so the database never holds an event for a task it does not hold.
 * Failure: a failed write is retried (with backoff) from the first document not written, so nothing
 * queued is dropped and nothing is written twice; callers waiting on a barrier wait through it.
 * Folding: final outcomes are copied into `tasks` documents by a low-priority pass that only runs
 * when no journal write is waiting (see models/task-event.ts for why the journal comes first).
 */
import mongoose, { type Connection, type Model } from 'mongoose';
import { backoffDelay } from '../common/backoff';
import type { Logger } from '../common/logger';
import { FINAL_STATES } from '../protocol/states';
import { decodeValue, encodeValue } from '../models/codec';
import { taskModel, type TaskDoc } from '../models/task';
import { taskEventModel, type TaskEventDoc } from '../models/task-event';
import { allocationModel, type AllocationDoc } from '../models/allocation';

type Entry =
  | { coll: 'tasks'; doc: TaskDoc }
  | { coll: 'events'; doc: TaskEventDoc }
  | { coll: 'allocations'; doc: AllocationDoc }
  | { coll: 'deallocations'; doc: { key: string } };

export interface FoldedState {
  id: string;
  _id: string;
  batch: string;
  state: TaskDoc['state'];
  attempts: number;
  rev: number;
  result?: unknown;
  error?: TaskDoc['error'];
  who?: string | null;
  /** When the last attempt was assigned (epoch ms). */
  when?: number | null;
  moduleHash?: string | null;
}

export interface StoreOptions {
  /** Operations per bulk write. FerretDB 1.24 stalls on update commands of 100 or more. */
  writeChunk: number;
  /** Final outcomes folded into `tasks` per pass. */
  foldChunk?: number;
  /** Quiet time before folding starts. */
  foldIdleMs?: number;
  logger: Logger;
}

export class Store {
  readonly tasks: Model<TaskDoc>;
  readonly events: Model<TaskEventDoc>;
  readonly allocations: Model<AllocationDoc>;
  private queue: Entry[] = [];
  private waiters: (() => void)[] = [];
  private folds = new Map<string, FoldedState>();
  private running = false;
  private closed = false;
  private lastEnqueue = 0;
  private foldTimer: NodeJS.Timeout | null = null;
  /** Total documents written, for metrics and benchmarks. */
  written = 0;

  constructor(
    conn: Connection,
    private readonly opts: StoreOptions,
  ) {
    this.tasks = taskModel(conn);
    this.events = taskEventModel(conn);
    this.allocations = allocationModel(conn);
  }

  insertTask(doc: TaskDoc): void {
    this.push({ coll: 'tasks', doc: { ...doc, params: encodeValue(doc.params) as unknown[] } });
  }

  appendEvent(doc: TaskEventDoc): void {
    const e = { ...doc };
    if ('result' in e) e.result = encodeValue(e.result);
    if (e.error?.details !== undefined) e.error = { ...e.error, details: encodeValue(e.error.details) };
    this.push({ coll: 'events', doc: e });
  }

  /** Records that an affinity key now belongs to a runner (ordered with everything else). */
  allocate(doc: AllocationDoc): void {
    this.push({ coll: 'allocations', doc });
  }

  deallocate(key: string): void {
    this.push({ coll: 'deallocations', doc: { key } });
  }

  async loadAllocations(): Promise<AllocationDoc[]> {
    return (await this.allocations.collection.find({}).toArray()) as unknown as AllocationDoc[];
  }

  /** Copy a final outcome into its `tasks` document when the writer is idle. */
  fold(state: FoldedState): void {
    this.folds.set(state.id, state);
    this.scheduleFold();
  }

  /** Resolves once everything enqueued so far is durably written. */
  barrier(): Promise<void> {
    if (this.queue.length === 0 && !this.running) return Promise.resolve();
    return new Promise((resolve) => {
      this.waiters.push(resolve);
      this.kick();
    });
  }

  get backlog(): number {
    return this.queue.length;
  }

  async close(): Promise<void> {
    await this.barrier();
    this.closed = true;
    if (this.foldTimer) clearTimeout(this.foldTimer);
  }

  private push(e: Entry): void {
    if (this.closed) {
      // Changes made after close (a runner timing out during shutdown) are not written: the
      // database keeps the state as of close, and the next start recovers from it.
      this.opts.logger.warn('write after close dropped', { collection: e.coll });
      return;
    }
    this.queue.push(e);
    this.lastEnqueue = Date.now();
    this.kick();
  }

  private kick(): void {
    if (this.running) return;
    this.running = true;
    // Let the current tick finish enqueueing, so one tick's changes go out as one batch.
    setImmediate(() => void this.drain());
  }

  private async drain(): Promise<void> {
    try {
      while (this.queue.length > 0) {
        const batch = this.queue;
        const waiters = this.waiters;
        this.queue = [];
        this.waiters = [];
        await this.writeAll(batch);
        for (const w of waiters) w();
      }
      // Barriers taken while the queue was empty but the loop was running.
      const waiters = this.waiters;
      this.waiters = [];
      for (const w of waiters) w();
    } finally {
      this.running = false;
      if (this.queue.length > 0 || this.waiters.length > 0) this.kick();
      else this.scheduleFold();
    }
  }

  private async writeAll(batch: Entry[]): Promise<void> {
    let i = 0;
    let failures = 0;
    while (i < batch.length) {
      const coll = batch[i].coll;
      let j = i;
      while (j < batch.length && j - i < this.opts.writeChunk && batch[j].coll === coll) j++;
      const docs = batch.slice(i, j).map((e) => e.doc);
      try {
        if (coll === 'deallocations') {
          await this.allocations.collection.deleteMany({
            key: { $in: docs.map((d) => (d as { key: string }).key) },
          });
        } else {
          const model = coll === 'tasks' ? this.tasks : coll === 'events' ? this.events : this.allocations;
          await model.collection.insertMany(docs as never[], { ordered: true });
        }
        this.written += docs.length;
        i = j;
        failures = 0;
      } catch (err) {
        const done = insertedBeforeError(err);
        if (isDuplicateKey(err) && coll !== 'tasks') {
          // A revision already stored: either our own earlier try whose answer was lost, or another
          // master writing the same tasks. Skip it; the first writer's record stands.
          this.opts.logger.warn('journal revision already stored; skipped', {
            task: (docs[done] as TaskEventDoc).task,
            rev: (docs[done] as TaskEventDoc).rev,
          });
          i += done + 1;
          continue;
        }
        i += done;
        failures++;
        const wait = backoffDelay(failures - 1, { base: 100, cap: 5000 });
        this.opts.logger.error('database write failed; retrying', { error: String(err), retryInMs: wait });
        if (this.closed) {
          this.opts.logger.warn('store closed with writes still failing; dropped', {
            left: batch.length - i,
          });
          return;
        }
        await new Promise((r) => setTimeout(r, wait));
      }
    }
  }

  private scheduleFold(): void {
    if (this.foldTimer || this.closed || this.folds.size === 0) return;
    const idle = this.opts.foldIdleMs ?? 200;
    this.foldTimer = setTimeout(() => {
      this.foldTimer = null;
      void this.foldSome();
    }, idle);
    this.foldTimer.unref();
  }

  private async foldSome(): Promise<void> {
    const idle = this.opts.foldIdleMs ?? 200;
    if (this.running || this.closed || Date.now() - this.lastEnqueue < idle) return this.scheduleFold();
    const chunk: FoldedState[] = [];
    for (const s of this.folds.values()) {
      chunk.push(s);
      if (chunk.length >= (this.opts.foldChunk ?? 10)) break;
    }
    if (chunk.length === 0) return;
    this.running = true;
    try {
      await this.tasks.collection.bulkWrite(
        chunk.map((s) => ({
          updateOne: {
            // Precondition: never replace a newer fold with an older one.
            filter: { _id: new mongoose.Types.ObjectId(s._id), rev: { $lt: s.rev } },
            update: {
              $set: {
                state: s.state,
                attempts: s.attempts,
                rev: s.rev,
                result: encodeValue(s.result ?? null),
                error:
                  s.error?.details !== undefined
                    ? { ...s.error, details: encodeValue(s.error.details) }
                    : (s.error ?? null),
                moduleHash: s.moduleHash ?? null,
                'assigned.who': s.who ?? null,
                'assigned.when': s.when ?? null,
                'assigned.completed': Date.now(),
                updated: Date.now(),
              },
            },
          },
        })),
        { ordered: true },
      );
      for (const s of chunk) if (this.folds.get(s.id) === s) this.folds.delete(s.id);
    } catch (err) {
      this.opts.logger.warn('folding outcomes into tasks failed; will retry', { error: String(err) });
    } finally {
      this.running = false;
      if (this.queue.length > 0 || this.waiters.length > 0) this.kick();
      else this.scheduleFold();
    }
  }

  /** Every task whose `tasks` document is not final, with its journal folded in. */
  async loadUnfinished(): Promise<{ docs: TaskDoc[]; states: Map<string, FoldedState> }> {
    const docs = (
      (await this.tasks.collection
        .find({ state: { $nin: [...FINAL_STATES] } })
        .toArray()) as unknown as TaskDoc[]
    ).map(decodeDoc);
    const states = await this.foldJournal(docs);
    return { docs, states };
  }

  /** Current state of these tasks (final or not), from `tasks` and the journal. Unknown ids are absent. */
  async fetchStates(ids: string[]): Promise<Map<string, FoldedState>> {
    if (ids.length === 0) return new Map();
    const docs = (
      (await this.tasks.collection.find({ id: { $in: ids } }).toArray()) as unknown as TaskDoc[]
    ).map(decodeDoc);
    return this.foldJournal(docs);
  }

  private async foldJournal(docs: TaskDoc[]): Promise<Map<string, FoldedState>> {
    const states = new Map<string, FoldedState>();
    for (const d of docs) {
      states.set(d.id, {
        id: d.id,
        _id: String(d._id),
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
    const open = docs.filter((d) => !FINAL_STATES.includes(d.state)).map((d) => d.id);
    for (let i = 0; i < open.length; i += 5000) {
      const events = (await this.events.collection
        .find({ task: { $in: open.slice(i, i + 5000) } })
        .toArray()) as unknown as TaskEventDoc[];
      events.sort((a, b) => a.rev - b.rev);
      for (const e of events) {
        const s = states.get(e.task);
        if (!s || e.rev <= s.rev) continue;
        s.rev = e.rev;
        s.state = e.state;
        s.attempts = e.attempt;
        if (e.who !== undefined) s.who = e.who;
        if ('result' in e) s.result = decodeValue(e.result);
        if (e.error !== undefined)
          s.error = e.error ? { ...e.error, details: decodeValue(e.error.details) } : e.error;
        if (e.moduleHash) s.moduleHash = e.moduleHash;
      }
    }
    return states;
  }
}

function decodeDoc(d: TaskDoc): TaskDoc {
  return {
    ...d,
    params: decodeValue(d.params) as unknown[],
    result: decodeValue(d.result),
    error: d.error ? { ...d.error, details: decodeValue(d.error.details) } : d.error,
  };
}

function insertedBeforeError(err: unknown): number {
  const e = err as { insertedCount?: number; result?: { insertedCount?: number } };
  return e.insertedCount ?? e.result?.insertedCount ?? 0;
}

function isDuplicateKey(err: unknown): boolean {
  const e = err as { code?: number; writeErrors?: { code?: number }[] | { code?: number } };
  if (e.code === 11000) return true;
  const we = e.writeErrors;
  if (Array.isArray(we)) return we[0]?.code === 11000;
  return we?.code === 11000;
}

/**
 * Keeps `tasks` current: every change of a task is folded into its document soon after it is
 * durable, by a loop that runs beside the journal writer (never only when it is idle, so continuous
 * load cannot starve it).
 *
 * Inputs: the live task records the scheduler changed, each with the writer's sequence number of its
 * latest change. Only records whose latest change is durable are written (a document must exist
 * before it is updated, and a journal record must not be deleted before it was written).
 * Coalescing: a record is kept once however often it changes, and the update writes its state at
 * the time of writing, so a task that went assigned → running → done between two rounds costs one
 * update. Ordering: the filter holds the precondition `rev < new`, so an older state never replaces
 * a newer one. Once a final state is in `tasks`, the task's journal records are deleted.
 * Bounded lag: when more records wait than `foldBacklogLimit`, `congested` tells the scheduler to
 * hold new assignments until the folder catches up.
 */
import { backoffDelay } from '../common/backoff';
import type { Logger } from '../common/logger';
import { wireError } from '../protocol/errors';
import { isFinal } from '../protocol/states';
import { encodeValue } from '../models/codec';
import { eventId } from '../models/task-event';
import type { Store } from './store';
import type { TaskRecord } from './task-record';
import { classify } from './write-errors';

export interface FoldOptions {
  /** Updates per command (FerretDB groups them in few transactions). Default 500. */
  foldChunk?: number;
  /** Records waiting to be folded above which new assignments wait. Default 20,000. */
  foldBacklogLimit?: number;
  logger: Logger;
}

interface Pending {
  t: TaskRecord;
  /** Writer sequence of the latest change. */
  seq: number;
  /** When the oldest change not yet folded was made. */
  since: number;
}

export class Folder {
  private pending = new Map<string, Pending>();
  private running = false;
  private closed = false;
  private idle: (() => void)[] = [];
  /** Recent lags of final states behind their outcome (ms), newest last; for status and benchmarks. */
  readonly lags: number[] = [];
  readonly counters = { commands: 0, documents: 0, folded: 0 };
  /** Called when the backlog falls back under the limit. */
  onRelieved: () => void = () => {};
  private wasCongested = false;

  constructor(
    private readonly store: Store,
    private readonly opts: FoldOptions,
  ) {}

  add(t: TaskRecord, seq: number): void {
    const p = this.pending.get(t.id);
    if (p) {
      p.t = t;
      p.seq = seq;
    } else this.pending.set(t.id, { t, seq, since: Date.now() });
    if (this.congested) this.wasCongested = true;
  }

  drop(id: string): void {
    this.pending.delete(id);
  }

  /** The record of a task whose latest state is not in `tasks` yet. */
  pendingRecord(id: string): TaskRecord | undefined {
    return this.pending.get(id)?.t;
  }

  get backlog(): number {
    return this.pending.size;
  }

  get congested(): boolean {
    return this.pending.size > (this.opts.foldBacklogLimit ?? 20_000);
  }

  oldestAgeMs(): number {
    let oldest = Infinity;
    for (const p of this.pending.values()) if (p.since < oldest) oldest = p.since;
    return oldest === Infinity ? 0 : Date.now() - oldest;
  }

  kick(): void {
    if (this.running || this.closed) return;
    this.running = true;
    setImmediate(() => void this.loop());
  }

  /** Resolves when nothing durable is left to fold (tests, shutdown). */
  settled(): Promise<void> {
    if (!this.running && !this.hasWork()) return Promise.resolve();
    return new Promise((r) => {
      this.idle.push(r);
      this.kick();
    });
  }

  async close(): Promise<void> {
    await this.settled();
    this.closed = true;
  }

  private hasWork(): boolean {
    const durable = this.store.durable;
    for (const p of this.pending.values()) if (p.seq <= durable) return true;
    return false;
  }

  private async loop(): Promise<void> {
    let failures = 0;
    try {
      for (;;) {
        const durable = this.store.durable;
        const chunk: Pending[] = [];
        for (const p of this.pending.values()) {
          if (p.seq > durable) continue;
          chunk.push(p);
          if (chunk.length >= (this.opts.foldChunk ?? 500)) break;
        }
        if (chunk.length === 0) break;
        try {
          await this.write(chunk);
          failures = 0;
        } catch (err) {
          if (this.closed || this.store.isClosed) break;
          const f = classify(err);
          const wait = backoffDelay(failures++, { base: 100, cap: 5000 });
          this.opts.logger.warn('folding into tasks failed; retrying', { error: f.message, retryInMs: wait });
          await new Promise((r) => setTimeout(r, wait));
        }
        if (this.wasCongested && !this.congested) {
          this.wasCongested = false;
          this.onRelieved();
        }
      }
    } finally {
      this.running = false;
      const idle = this.idle;
      this.idle = [];
      for (const r of idle) r();
    }
  }

  private async write(chunk: Pending[]): Promise<void> {
    const now = Date.now();
    const snaps = chunk.map((p) => ({ p, rev: p.t.rev, state: p.t.state }));
    const ops = snaps.map(({ p }) => ({
      updateOne: { filter: { _id: p.t.id, rev: { $lt: p.t.rev } }, update: { $set: fields(p.t, now) } },
    }));
    let refusedAt: Set<number> | null = null;
    try {
      await this.store.tasks.bulkWrite(ops as never[], { ordered: false });
    } catch (err) {
      const f = classify(err);
      if (f.kind === 'transient') throw err;
      // A value the server takes in the journal but not here: write the failure instead of it.
      const errs = (err as { writeErrors?: { index: number }[] }).writeErrors ?? [];
      refusedAt = new Set(errs.map((e) => e.index));
      if (refusedAt.size === 0) refusedAt = new Set(ops.map((_, i) => i));
      const retry = snaps
        .filter((_, i) => refusedAt?.has(i))
        .map(({ p }) => ({
          updateOne: {
            filter: { _id: p.t.id, rev: { $lt: p.t.rev } },
            update: {
              $set: {
                state: 'failed',
                rev: p.t.rev,
                updated: now,
                error: wireError(
                  'EPERSIST',
                  `task "${p.t.id}": the database refused its state: ${f.message}`,
                ),
              },
            },
          },
        }));
      this.opts.logger.error('tasks document refused an update; stored as EPERSIST', { tasks: retry.length });
      await this.store.tasks.bulkWrite(retry as never[], { ordered: false }).catch(() => undefined);
    }
    this.counters.commands++;
    this.counters.documents += ops.length;
    const journal: string[] = [];
    const done = Date.now();
    for (const { p, rev, state } of snaps) {
      if (this.pending.get(p.t.id) !== p || p.t.rev !== rev) {
        // Changed while the write was in flight: fold again, counting from now.
        if (this.pending.get(p.t.id) === p) p.since = now;
        continue;
      }
      this.pending.delete(p.t.id);
      this.counters.folded++;
      if (isFinal(state)) {
        if (p.t.finishedAt) this.recordLag(done - p.t.finishedAt);
        for (let r = 1; r <= rev; r++) journal.push(eventId(p.t.id, r));
      }
    }
    if (journal.length > 0) {
      await this.store.deleteEvents(journal);
      this.counters.commands += Math.ceil(journal.length / 1000);
    }
  }

  private recordLag(ms: number): void {
    this.lags.push(ms);
    if (this.lags.length > 100_000) this.lags.splice(0, this.lags.length - 50_000);
  }
}

/** The `$set` that makes a `tasks` document show the record's current state. */
function fields(t: TaskRecord, now: number): Record<string, unknown> {
  const set: Record<string, unknown> = {
    state: t.state,
    rev: t.rev,
    attempts: t.attempts,
    updated: now,
    'assigned.who': t.who,
    'assigned.when': t.assignedAt,
  };
  if (t.error) set.error = storable(t.error);
  if (t.uncounted) set.uncounted = t.uncounted;
  if (isFinal(t.state)) {
    set['assigned.completed'] = t.finishedAt ?? now;
    if (t.moduleHash) set.moduleHash = t.moduleHash;
    if (t.state === 'done') {
      set.result = encodeOrFail(t.result, set);
      set.error = null;
    }
  }
  return set;
}

function storable(e: NonNullable<TaskRecord['error']>): unknown {
  if (e.details === undefined) return e;
  try {
    return { ...e, details: encodeValue(e.details) };
  } catch {
    return { code: e.code, message: e.message };
  }
}

function encodeOrFail(v: unknown, set: Record<string, unknown>): unknown {
  try {
    return encodeValue(v === undefined ? null : v);
  } catch (err) {
    set.state = 'failed';
    set.error = wireError('EPERSIST', String(err));
    return null;
  }
}

/**
 * Writes the changes nobody waits for — a task started running — into `tasks`, a little later and
 * coalesced: a record waits `foldDelayMs` (and until the writer made its earlier changes durable),
 * and if a newer state was written meanwhile (the task finished) it is dropped, so fast tasks cost
 * no extra statement. The filter holds the precondition `rev < new`, so this can never write over
 * a newer state.
 *
 * Bounded: when more records wait than `foldBacklogLimit`, `congested` tells the scheduler to hold
 * new assignments until the folder catches up.
 */
import { backoffDelay } from '../common/backoff';
import type { Logger } from '../common/logger';
import { isFinal } from '../protocol/states';
import { encodeValue } from '../models/codec';
import type { Collection } from 'mongoose';
import type { TaskDoc } from '../models/task';
import type { TaskRecord } from './task-record';
import { classify } from './write-errors';

export interface FoldOptions {
  /** Statements per update command. Default 500. */
  foldChunk?: number;
  /** How long a change waits, so a newer one can replace it. Default 200 ms. */
  foldDelayMs?: number;
  /** Records waiting above which new assignments wait. Default 20,000. */
  foldBacklogLimit?: number;
  logger: Logger;
}

/** What the folder needs of the store. */
export interface FoldTarget {
  readonly tasks: Collection<TaskDoc>;
  /** Writer sequence number of the last durable change. */
  readonly durable: number;
  readonly isClosed: boolean;
}

interface Pending {
  t: TaskRecord;
  rev: number;
  /** Writer sequence when the change was made: written only once the writer is past it. */
  seq: number;
  since: number;
}

export class Folder {
  private pending = new Map<string, Pending>();
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private closed = false;
  readonly counters = { commands: 0, documents: 0 };
  /** Called when the backlog falls back under the limit. */
  onRelieved: () => void = () => {};

  constructor(
    private readonly store: FoldTarget,
    private readonly opts: FoldOptions,
  ) {}

  add(t: TaskRecord, seq: number): void {
    if (this.closed) return;
    const p = this.pending.get(t.id);
    if (p) Object.assign(p, { t, rev: t.rev, seq });
    else this.pending.set(t.id, { t, rev: t.rev, seq, since: Date.now() });
    this.schedule();
  }

  /** The writer is writing a newer state of this task: nothing to fold. */
  drop(id: string): void {
    this.pending.delete(id);
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

  /** Writes everything waiting now, whatever its age (tests, shutdown). */
  async settled(): Promise<void> {
    await this.running;
    if (this.pending.size > 0) await this.round(true);
  }

  async close(): Promise<void> {
    await this.settled();
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
  }

  private schedule(): void {
    if (this.timer || this.running || this.closed) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.running = this.round(false).finally(() => {
        this.running = null;
        if (this.pending.size > 0) this.schedule();
      });
    }, this.opts.foldDelayMs ?? 200);
    this.timer.unref();
  }

  private async round(all: boolean): Promise<void> {
    const wasCongested = this.congested;
    const ripe = Date.now() - (this.opts.foldDelayMs ?? 200);
    let failures = 0;
    for (;;) {
      const durable = this.store.durable;
      const chunk: Pending[] = [];
      for (const p of this.pending.values()) {
        if (p.seq > durable || (!all && p.since > ripe)) continue;
        chunk.push(p);
        if (chunk.length >= (this.opts.foldChunk ?? 500)) break;
      }
      if (chunk.length === 0) break;
      const now = Date.now();
      try {
        await this.store.tasks.bulkWrite(
          chunk.map((p) => ({
            updateOne: {
              filter: { _id: p.t.id, rev: { $lt: p.rev } },
              update: { $set: stateFields(p.t, now) },
            },
          })) as never[],
          { ordered: false },
        );
        failures = 0;
      } catch (err) {
        if (this.closed || this.store.isClosed) return;
        const f = classify(err);
        if (f.kind === 'transient') {
          const wait = backoffDelay(failures++, { base: 100, cap: 5000 });
          this.opts.logger.warn('writing running states failed; retrying', {
            error: f.message,
            retryInMs: wait,
          });
          await new Promise((r) => setTimeout(r, wait));
          continue;
        }
        // Nothing here holds user values; a refusal is not worth a retry.
        this.opts.logger.warn('running states not written', { error: f.message });
      }
      this.counters.commands++;
      this.counters.documents += chunk.length;
      for (const p of chunk)
        if (this.pending.get(p.t.id) === p && p.t.rev === p.rev) this.pending.delete(p.t.id);
    }
    if (wasCongested && !this.congested) this.onRelieved();
  }
}

/** The `$set` that makes a `tasks` document show the record's current state. */
export function stateFields(t: TaskRecord, now: number): Record<string, unknown> {
  const set: Record<string, unknown> = {
    state: t.state,
    rev: t.rev,
    attempts: t.attempts,
    updated: now,
    'assigned.who': t.who,
    'assigned.when': t.assignedAt,
  };
  if (t.error) set.error = t.stored ? t.stored.error : storable(t.error);
  if (t.uncounted) set.uncounted = t.uncounted;
  if (isFinal(t.state)) {
    set['assigned.completed'] = t.finishedAt ?? now;
    if (t.moduleHash) set.moduleHash = t.moduleHash;
    if (t.state === 'done') {
      set.result = t.stored ? t.stored.result : null;
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

/**
 * What the master remembers for people watching it: tasks by state, each batch's counts and duration,
 * done and failed per second over the last five minutes, and a bounded timeline of every task's
 * changes (the store writes only each task's latest state, so the history of its attempts lives
 * here; a task no longer remembered falls back to its document's created / assigned / completed).
 *
 * Fed by the scheduler's observer calls, on its hot path: each call is a few field updates.
 * Logs one line when a batch is first added and one when it has no open task left, at most
 * {@link BATCH_LINES} of each per {@link BATCH_LINES_WINDOW_MS}: a feeder adding one task at a time,
 * 500 times a second, would otherwise write a thousand lines a second (and each line costs the
 * master as much as the add). Lines beyond are counted, and one line says how many were left out.
 */
import { LogLimiter } from '../../common/log-limit';
import type { Logger } from '../../common/logger';
import { isFinal, type TaskState } from '../../protocol/states';
import { viewState, type BatchView, type TaskView, type TimelineEntry } from '../../protocol/views';
import type { TaskDoc } from '../../models/task';
import { emptyCounts, type StoredBatch } from '../store/queries';
import type { TaskObserver } from '../scheduler/scheduler';
import type { TaskRecord } from '../task-record';

export type { BatchView, TaskView, TimelineEntry };

interface BatchState {
  id: string;
  counts: Record<TaskState, number>;
  total: number;
  created: number;
  finishedAt: number | null;
}

export interface MonitorOptions {
  /** Tasks whose timeline is kept (the most recently added). Default 50,000. */
  timelineTasks?: number;
  /** Entries kept per task. Default 50. */
  timelineEntries?: number;
  /** Batches kept in memory (finished ones are forgotten first). Default 1,000. */
  batches?: number;
  logger: Logger;
}

const SERIES_SECONDS = 300;
export const BATCH_LINES = 50;
export const BATCH_LINES_WINDOW_MS = 10_000;

export class Monitor implements TaskObserver {
  /** Tasks by state: those in memory at start, and every change since. */
  readonly counts = emptyCounts();
  private timelines = new Map<string, TimelineEntry[]>();
  private batches = new Map<string, BatchState>();
  private series: { at: number; done: number; failed: number }[] = [];
  /** Called after every change (the dashboard's task events). */
  onTask: ((t: TaskRecord) => void) | null = null;
  private readonly lines = new LogLimiter({ burst: BATCH_LINES, windowMs: BATCH_LINES_WINDOW_MS });

  constructor(private readonly opts: MonitorOptions) {}

  /** Batches as stored when the master started (newest last), and the tasks recovered into memory. */
  seed(stored: StoredBatch[], live: Iterable<TaskRecord>): void {
    for (const b of [...stored].sort((x, y) => x.created - y.created)) {
      const total = Object.values(b.counts).reduce((a, n) => a + n, 0);
      const open = total - b.counts.done - b.counts.failed - b.counts.cancelled;
      this.batches.set(b.id, {
        id: b.id,
        counts: { ...b.counts },
        total,
        created: b.created,
        finishedAt: open > 0 ? null : b.completed,
      });
    }
    for (const t of live) this.counts[t.state]++;
  }

  added(tasks: readonly TaskRecord[]): void {
    const fresh = new Map<string, number>();
    for (const t of tasks) {
      this.counts[t.state]++;
      this.record(t);
      let b = this.batches.get(t.batch);
      if (!b) {
        this.batches.set(
          t.batch,
          (b = { id: t.batch, counts: emptyCounts(), total: 0, created: t.created, finishedAt: null }),
        );
        fresh.set(t.batch, 0);
      }
      if (fresh.has(t.batch)) fresh.set(t.batch, (fresh.get(t.batch) as number) + 1);
      b.counts[t.state]++;
      b.total++;
      b.finishedAt = null;
    }
    for (const [batch, n] of fresh)
      this.lines.line(this.opts.logger, 'info', 'added', 'batch added', { batch, tasks: n });
    if (this.onTask) for (const t of tasks) this.onTask(t);
    this.trimBatches();
  }

  changed(t: TaskRecord, prev: TaskState): void {
    this.counts[prev]--;
    this.counts[t.state]++;
    this.record(t);
    if (isFinal(t.state)) this.count(t.state === 'done' ? 'done' : 'failed');
    const b = this.batches.get(t.batch);
    if (b) {
      b.counts[prev]--;
      b.counts[t.state]++;
      if (isFinal(prev) && !isFinal(t.state)) b.finishedAt = null;
      else if (isFinal(t.state) && b.finishedAt === null && openOf(b) === 0) this.batchFinished(b);
    }
    this.onTask?.(t);
  }

  discarded(tasks: readonly TaskRecord[]): void {
    for (const t of tasks) {
      this.counts[t.state]--;
      this.timelines.delete(t.id);
      const b = this.batches.get(t.batch);
      if (!b) continue;
      b.counts[t.state]--;
      b.total--;
      if (b.total === 0) this.batches.delete(t.batch);
    }
  }

  /** Says how many batch lines were left out so far (the master is closing). */
  flushLines(): void {
    this.lines.flush();
  }

  /** The task's changes as remembered, oldest first (empty when forgotten). */
  timeline(id: string): TimelineEntry[] {
    return this.timelines.get(id) ?? [];
  }

  batch(id: string): BatchView | undefined {
    const b = this.batches.get(id);
    return b && batchView(b);
  }

  /** Batches remembered, newest first. */
  recentBatches(limit: number): BatchView[] {
    const list = [...this.batches.values()];
    const out: BatchView[] = [];
    for (let i = list.length - 1; i >= 0 && out.length < limit; i--) out.push(batchView(list[i]));
    return out.sort((a, b) => b.created - a.created);
  }

  /** Done and failed (or cancelled) per second, the last five minutes. */
  throughput(): { at: number; done: number; failed: number }[] {
    const from = Math.floor(Date.now() / 1000) * 1000 - SERIES_SECONDS * 1000;
    return this.series.filter((p) => p.at > from).map((p) => ({ ...p }));
  }

  private record(t: TaskRecord): void {
    const e: TimelineEntry = { at: Date.now(), state: t.state, attempt: t.attempts };
    if (t.who) e.runner = t.who;
    if (t.error && t.state !== 'done') e.code = t.error.code;
    const list = this.timelines.get(t.id);
    if (!list) {
      // Made with its first entry: an array pushed into from empty reserves 17 slots, and most
      // timelines of queued tasks hold one entry.
      this.timelines.set(t.id, [e]);
      if (this.timelines.size > (this.opts.timelineTasks ?? 50_000))
        this.timelines.delete(this.timelines.keys().next().value as string);
      return;
    }
    list.push(e);
    // The first entry (when it was added) and the latest ones tell the story.
    if (list.length > (this.opts.timelineEntries ?? 50)) list.splice(1, 1);
  }

  private count(kind: 'done' | 'failed'): void {
    const at = Math.floor(Date.now() / 1000) * 1000;
    let last = this.series[this.series.length - 1];
    if (!last || last.at !== at) {
      this.series.push((last = { at, done: 0, failed: 0 }));
      if (this.series.length > SERIES_SECONDS) this.series.shift();
    }
    last[kind]++;
  }

  private batchFinished(b: BatchState): void {
    b.finishedAt = Date.now();
    this.lines.line(this.opts.logger, 'info', 'finished', 'batch finished', {
      batch: b.id,
      tasks: b.total,
      done: b.counts.done,
      failed: b.counts.failed,
      cancelled: b.counts.cancelled,
      durationMs: b.finishedAt - b.created,
    });
  }

  /** Over the bound, the oldest finished batches are forgotten (the database still answers for them). */
  private trimBatches(): void {
    const limit = this.opts.batches ?? 1000;
    if (this.batches.size <= limit) return;
    for (const b of this.batches.values()) {
      if (this.batches.size <= limit) break;
      if (b.finishedAt !== null) this.batches.delete(b.id);
    }
  }
}

function openOf(b: BatchState): number {
  return b.counts.waiting + b.counts.ready + b.counts.assigned + b.counts.running;
}

export function batchView(b: Omit<BatchState, 'total'> & { total?: number }): BatchView {
  const total = b.total ?? Object.values(b.counts).reduce((a, n) => a + n, 0);
  return {
    id: b.id,
    total,
    counts: { ...b.counts },
    created: b.created,
    finishedAt: b.finishedAt,
    durationMs: b.finishedAt === null ? null : b.finishedAt - b.created,
  };
}

/** A batch as stored (not remembered): finished when none of its tasks is open. */
export function storedBatchView(b: StoredBatch): BatchView {
  const open = b.counts.waiting + b.counts.ready + b.counts.assigned + b.counts.running;
  return batchView({
    id: b.id,
    counts: b.counts,
    created: b.created,
    finishedAt: open > 0 ? null : b.completed,
  });
}

export function recordView(t: TaskRecord): TaskView {
  const v: TaskView = {
    id: t.id,
    batch: t.batch,
    module: t.module,
    state: viewState(t.state, t.runAt, Date.now()),
    priority: t.priority,
    attempts: t.attempts,
    maxAttempts: t.maxAttempts + (t.uncounted ?? 0),
    runner: t.who,
    created: t.created,
    assignedAt: t.assignedAt,
    finishedAt: t.finishedAt ?? null,
    dependencies: [...t.dependencies],
  };
  if (t.group) v.group = t.group;
  if (t.runAt) v.runAt = t.runAt;
  if (t.error) v.error = { code: t.error.code, message: t.error.message };
  if (t.backfilled) v.backfilled = true;
  if (t.progress !== undefined && (t.state === 'running' || t.state === 'assigned')) v.progress = t.progress;
  return v;
}

export function docView(d: TaskDoc): TaskView {
  const v: TaskView = {
    id: d._id,
    batch: d.batch,
    module: d.module,
    state: viewState(d.state, d.runAt, Date.now()),
    priority: d.priority ?? 0,
    attempts: d.attempts ?? 0,
    maxAttempts: d.maxAttempts + (d.uncounted ?? 0),
    runner: d.assigned?.who ?? null,
    created: d.created,
    assignedAt: d.assigned?.when ?? null,
    finishedAt: isFinal(d.state) ? (d.assigned?.completed ?? null) : null,
    dependencies: d.dependencies ?? [],
  };
  if (d.group) v.group = d.group;
  if (d.backfilled) v.backfilled = true;
  if (d.runAt) v.runAt = d.runAt;
  if (d.error && d.state !== 'done') v.error = { code: d.error.code, message: d.error.message };
  return v;
}

/** A forgotten task's timeline, from what its document holds. */
export function docTimeline(d: TaskDoc): TimelineEntry[] {
  const out: TimelineEntry[] = [{ at: d.created, state: 'waiting', attempt: 0 }];
  if (d.assigned?.when)
    out.push({
      at: d.assigned.when,
      state: 'assigned',
      attempt: d.attempts,
      ...(d.assigned.who ? { runner: d.assigned.who } : {}),
    });
  if (isFinal(d.state))
    out.push({
      at: d.assigned?.completed ?? d.updated,
      state: d.state,
      attempt: d.attempts,
      ...(d.error && d.state !== 'done' ? { code: d.error.code } : {}),
    });
  else if (d.state !== 'assigned' && d.state !== 'waiting')
    out.push({ at: d.updated, state: d.state, attempt: d.attempts });
  return out;
}

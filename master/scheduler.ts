/**
 * The in-memory scheduler: every transition of a task is one method here (add, assign, start,
 * complete, fail, requeue, release dependents), each written through to the task's `tasks` document
 * by the store (master/store.ts).
 *
 * Fencing: every assignment carries its attempt number; a report for any other attempt than the
 * task's current one is stale and ignored, so a late runner never overwrites a newer attempt.
 * Durability before effect: assignments are sent, add replies and outcomes delivered, and runners'
 * results acknowledged only after the store's barrier, i.e. once the change is in the database.
 */
import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import mongoose from 'mongoose';
import { backoffDelay } from '../common/backoff';
import type { Logger } from '../common/logger';
import { wireError, type ReportedError, type WireError } from '../protocol/errors';
import type { AttemptRef } from '../protocol/events';
import type { AddReply, Assignment, AttemptResult, ParsedTaskInput, TaskOutcome } from '../protocol/schemas';
import { isFinal, type TaskState } from '../protocol/states';
import type { TaskDoc } from '../models/task';
import { ReadyQueue } from './ready-queue';
import {
  canTake,
  eligible,
  freeSlots,
  mostAvailable,
  RunnerRegistry,
  type RunnerEntry,
} from './runner-registry';
import type { Store, StoredState } from './store';
import type { TaskRecord } from './task-record';
import { checkLimits, collectIds, collectRefs, summarize, validateBatch } from './validate';

export interface SchedulerOptions {
  maxAttempts: number;
  recoveryGraceMs: number;
  disconnectGraceMs: number;
  /** Final outcomes kept in memory for watchers and dependency checks. */
  finalCacheSize: number;
  selectRunner?: (task: TaskRecord, runners: RunnerEntry[]) => RunnerEntry | undefined;
  /** Largest task, as JSON, an add accepts (EVALIDATION). Default: unlimited. */
  maxTaskBytes?: number;
  /** Waiting + ready tasks allowed at once; an add beyond it is refused with EQUEUEFULL. */
  queueLimit: number;
  /** Run one task per `key` at a time; the others get its outcome. */
  holdSimilarWork: boolean;
  /** Chooses the runner for a new affinity key among the available ones (sorted ids). Default: hash of the key. */
  allocate?: (key: string, runnerIds: string[]) => string | undefined;
  /** Delay before a retry unless the task says otherwise. */
  retryBackoff: { type: 'fixed' | 'exponential'; delay: number; maxDelay?: number; jitter?: boolean };
  /** How often timeouts are checked. */
  timeoutSweepMs: number;
  /** Wait before distributing after a change, to gather more changes into one pass (0: next tick). */
  distributeDelayMs: number;
  logger: Logger;
}

interface QueueEntry {
  priority: number;
  seq: number;
  task: TaskRecord;
}

export interface SchedulerEvents {
  outcomes: [TaskOutcome[]];
  assigntimeout: [TaskOutcome];
}

/**
 * Sees every change of state as it is recorded (dashboard, metrics). Called synchronously on the hot
 * path: an observer must be cheap and must not call back into the scheduler.
 */
export interface TaskObserver {
  /** New tasks, in their first state (waiting or ready). */
  added(tasks: readonly TaskRecord[]): void;
  changed(t: TaskRecord, prev: TaskState): void;
  /** Tasks of an add the database refused: as if never added. */
  discarded(tasks: readonly TaskRecord[]): void;
}

export class Scheduler extends EventEmitter<SchedulerEvents> {
  readonly tasks = new Map<string, TaskRecord>();
  readonly finals = new Map<string, TaskOutcome>();
  readonly runners = new RunnerRegistry();
  private readonly ready = new ReadyQueue<QueueEntry>();
  private seq = 0;
  private distributeScheduled = false;
  private pendingAssign = new Map<RunnerEntry, Assignment[]>();
  private pendingOutcomes: TaskOutcome[] = [];
  private flushScheduled = false;
  private orphans = new Set<TaskRecord>();
  /** Tasks with a global or assign timeout, checked by the sweep. */
  private timed = new Set<TaskRecord>();
  private sweepTimer: NodeJS.Timeout | null = null;
  /** Running leader per key (holdSimilarWork). */
  private leaders = new Map<string, TaskRecord>();
  private retryTimers = new Set<NodeJS.Timeout>();
  /** Sticky allocations: affinity key → runner id (persisted in `allocations`). */
  readonly allocations = new Map<string, string>();
  /** Runner ids an operator drained: they get no new work, across reconnects. */
  private drained = new Set<string>();
  private closed = false;
  /** Counters for status and benchmarks. */
  readonly stats = { added: 0, assigned: 0, done: 0, failed: 0, retried: 0, stale: 0, held: 0, cancelled: 0 };
  readonly observers: TaskObserver[] = [];

  constructor(
    private readonly store: Store,
    private readonly opts: SchedulerOptions,
  ) {
    super();
    store.onRefused = (t, error) => this.stateRefused(t, error);
    store.folder.onRelieved = () => this.scheduleDistribute();
  }

  // ---- adding ----------------------------------------------------------------------------------

  async add(raw: unknown[], batchName: string | undefined, calledAt?: number): Promise<AddReply> {
    if (this.closed) return { ok: false, error: wireError('EVALIDATION', 'the master is shutting down') };
    // Size and depth first: a refused batch must change nothing, and must not reach the database.
    const limited = checkLimits(raw, this.opts.maxTaskBytes ?? Number.MAX_SAFE_INTEGER);
    if (limited.length > 0)
      return { ok: false, error: wireError('EVALIDATION', summarize(limited), { issues: limited }) };
    // Dependencies that memory cannot answer for are looked up once, by `_id`. The batch's own ids
    // are not: one stored earlier is refused by the `_id` index when the add is written, so an add
    // with ids of its own costs no read.
    const own = new Set(collectIds(raw));
    const missing = collectRefs(raw).filter(
      (id) => !own.has(id) && !this.tasks.has(id) && !this.finals.has(id),
    );
    const stored =
      missing.length > 0 ? await this.store.fetchStates(missing) : new Map<string, StoredState>();
    const { tasks: parsed, issues } = validateBatch(raw, (id) =>
      this.tasks.has(id) || this.finals.has(id) || stored.has(id) ? 'taken' : undefined,
    );
    if (issues.length > 0) {
      return { ok: false, error: wireError('EVALIDATION', summarize(issues), { issues }) };
    }
    // Validation awaited the database: ids may have been taken meanwhile by another add.
    const raced = parsed.find((t) => t.id !== undefined && (this.tasks.has(t.id) || this.finals.has(t.id)));
    if (raced) {
      const issue = {
        path: `tasks[${parsed.indexOf(raced)}].id`,
        message: `id "${raced.id}" is already taken`,
      };
      return { ok: false, error: wireError('EVALIDATION', summarize([issue]), { issues: [issue] }) };
    }

    // Every task in memory counts as at most one queued one: below the limit that way, no need to count.
    const queued =
      this.tasks.size + parsed.length <= this.opts.queueLimit ? this.tasks.size : this.queuedCount();
    if (queued + parsed.length > this.opts.queueLimit) {
      const retryAfterMs = this.retryAfterHint();
      return {
        ok: false,
        error: wireError(
          'EQUEUEFULL',
          `the queue is full: ${queued} tasks waiting, limit ${this.opts.queueLimit}, this batch has ${parsed.length}; retry in ~${retryAfterMs} ms`,
          { queued, limit: this.opts.queueLimit, retryAfterMs },
        ),
      };
    }
    const batch = batchName ?? new mongoose.Types.ObjectId().toHexString();
    const now = Date.now();
    const inputs = this.expandBroadcasts(parsed);
    const records: TaskRecord[] = inputs.map((p) => {
      const id = p.id ?? p.presetId ?? new mongoose.Types.ObjectId().toHexString();
      return {
        _id: id,
        id,
        module: p.module,
        params: p.params,
        priority: p.priority,
        dependencies: p.dependencies,
        batch,
        created: now,
        state: 'waiting',
        attempts: 0,
        maxAttempts: p.maxAttempts ?? this.opts.maxAttempts,
        rev: 0,
        pending: 0,
        dependents: [],
        who: null,
        assignedAt: null,
        runTimeout: p.runTimeout ?? null,
        timeout: p.timeout ?? null,
        assignTimeout: p.assignTimeout ?? null,
        deadline: p.timeout ? (calledAt ?? now) + p.timeout : null,
        seq: 0,
        key: p.key ?? null,
        affinity: p.affinity ?? null,
        backoff: p.backoff ?? null,
        requires: p.requires ?? null,
        runner: p.runner ?? null,
        fanout: p.fanout === true,
      };
    });
    // Everything that can refuse the add does so before memory changes.
    const prepared = this.store.prepareTasks(records.map(taskDoc));
    if ('error' in prepared) return { ok: false, error: prepared.error };
    for (const t of records) this.tasks.set(t.id, t);
    const depFailed: [TaskRecord, WireError][] = [];
    records.forEach((t, i) => {
      const failedDep = this.linkDependencies(t, stored);
      if (failedDep) depFailed.push([t, failedDep]);
      else if (t.fanout && t.pending === 0)
        depFailed.push([t, wireError('EATO', 'no connected runner to broadcast to')]);
      else if (t.pending === 0) t.state = 'ready';
      prepared.docs[i].state = t.state;
    });
    const written = this.store.insertTasks(prepared.docs);
    for (const o of this.observers) o.added(records);
    for (const t of records) {
      if (t.state === 'ready') this.enqueue(t);
      if (t.deadline || t.assignTimeout) this.track(t);
    }
    for (const [t, err] of depFailed) this.failForGood(t, err);
    this.stats.added += records.length;
    this.scheduleDistribute();
    const w = await written;
    if (!w.ok) {
      this.discard(records, w.error);
      const at = records.findIndex((t) => t.id === w.id);
      const given = at >= 0 && !inputs[at].copy ? inputs.slice(0, at).filter((x) => !x.copy).length : -1;
      if (w.error.code === 'EVALIDATION' && given >= 0) {
        const issue = { path: `tasks[${given}].id`, message: `id "${w.id}" is already taken` };
        return { ok: false, error: wireError('EVALIDATION', summarize([issue]), { issues: [issue] }) };
      }
      return { ok: false, error: w.error };
    }
    await this.store.barrier();
    // Refs of the tasks as given, in input order (a broadcast's copies are not among them).
    const given = records.filter((_, i) => !inputs[i].copy);
    return { ok: true, batch, tasks: given.map((t) => ({ id: t.id, _id: t._id })) };
  }

  /**
   * An add the database refused: its tasks leave memory as if never added (nothing of them is
   * stored), and tasks of other adds that depend on them fail with EDEPFAILED.
   */
  private discard(records: TaskRecord[], error: WireError): void {
    const gone = new Set(records);
    for (const o of this.observers) o.discarded(records);
    for (const t of records) {
      this.tasks.delete(t.id);
      this.finals.delete(t.id);
      this.timed.delete(t);
      this.store.forget(t.id);
      if (t.state === 'assigned' || t.state === 'running') this.freeSlot(t);
      if (t.key && this.leaders.get(t.key) === t) this.leaders.delete(t.key);
      if (t.heldBy) this.unholdFrom(t);
      t.state = 'failed';
      this.stats.added--;
    }
    this.pendingOutcomes = this.pendingOutcomes.filter((o) => !records.some((t) => t.id === o.id));
    for (const t of records) {
      for (const h of t.held ?? []) if (!gone.has(h)) this.enqueue(h);
      for (const d of t.dependents) if (!gone.has(d)) this.failForGood(d, depError(t.id, error));
    }
    this.scheduleDistribute();
  }

  /**
   * Counts a task's pending dependencies and registers it as their dependent. Dependencies no longer
   * in memory are looked up in `stored`; returns the error to fail the task with if one of them
   * failed, was cancelled, or cannot be found.
   */
  private linkDependencies(t: TaskRecord, stored: Map<string, StoredState>): WireError | null {
    let failed: WireError | null = null;
    for (const d of t.dependencies) {
      const live = this.tasks.get(d);
      if (live) {
        t.pending++;
        live.dependents.push(t);
        continue;
      }
      const fin = this.finals.get(d) ?? stored.get(d);
      if (!fin) failed ??= wireError('EDEPFAILED', `dependency "${d}" is not in the database`);
      else if (fin.state !== 'done' && !t.fanout) failed ??= depError(d, fin.error);
    }
    return failed;
  }

  // ---- distributing ----------------------------------------------------------------------------

  scheduleDistribute(): void {
    if (this.distributeScheduled || this.closed) return;
    this.distributeScheduled = true;
    const run = () => {
      this.distributeScheduled = false;
      this.distribute();
    };
    if (this.opts.distributeDelayMs > 0) setTimeout(run, this.opts.distributeDelayMs).unref();
    else setImmediate(run);
  }

  private distribute(): void {
    // `tasks` is too far behind: new work waits until the folder catches up (it calls back).
    if (this.store.folder.congested) return;
    let candidates = [...this.runners.values()].filter((r) => freeSlots(r) > 0);
    const select =
      this.opts.selectRunner ?? ((t: TaskRecord, rs: RunnerEntry[]) => mostAvailable(t.module, rs));
    const skipped: QueueEntry[] = [];
    while (candidates.length > 0 && this.ready.size > 0) {
      const e = this.ready.pop() as QueueEntry;
      if (e.task.state !== 'ready' || e.task.seq !== e.seq) continue; // left the queue meanwhile
      if (this.opts.holdSimilarWork && e.task.key) {
        const leader = this.leaders.get(e.task.key);
        if (leader && leader !== e.task) {
          this.holdBehind(e.task, leader);
          continue;
        }
      }
      const sticky = e.task.affinity ? this.allocationFor(e.task) : null;
      const able = candidates.filter(
        (c) => canTake(c, e.task.priority) && eligible(c, e.task) && (!e.task.affinity || c.id === sticky),
      );
      const r = able.length > 0 ? select(e.task, able) : undefined;
      if (!r || !canTake(r, e.task.priority)) {
        skipped.push(e);
        continue;
      }
      this.assign(e.task, r);
      if (freeSlots(r) <= 0) candidates = candidates.filter((c) => c !== r);
    }
    for (const e of skipped) this.ready.push(e);
    this.scheduleFlush();
  }

  private assign(t: TaskRecord, r: RunnerEntry): void {
    t.attempts++;
    t.who = r.id;
    t.assignedAt = Date.now();
    this.runners.hold(r, t.id, t.priority);
    if (this.opts.holdSimilarWork && t.key) this.leaders.set(t.key, t);
    this.change(t, 'assigned');
    this.stats.assigned++;
    let list = this.pendingAssign.get(r);
    if (!list) this.pendingAssign.set(r, (list = []));
    list.push({
      id: t.id,
      attempt: t.attempts,
      module: t.module,
      params: t.params,
      priority: t.priority,
      batch: t.batch,
      ...(t.runTimeout ? { runTimeout: t.runTimeout } : {}),
    });
  }

  /** After the changes of this tick are durable: send assignments, deliver outcomes. */
  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    if (this.pendingAssign.size === 0 && this.pendingOutcomes.length === 0) return;
    this.flushScheduled = true;
    const assign = this.pendingAssign;
    const outcomes = this.pendingOutcomes;
    this.pendingAssign = new Map();
    this.pendingOutcomes = [];
    void this.store.barrier().then(() => {
      this.flushScheduled = false;
      for (const [r, list] of assign) {
        // The runner may have gone, or a task been cancelled, while the write was in flight.
        const still = list.filter((a) => {
          const t = this.tasks.get(a.id);
          return t && t.who === r.id && t.attempts === a.attempt && t.state === 'assigned';
        });
        this.runners.send(r, still);
      }
      if (outcomes.length > 0) this.emit('outcomes', outcomes);
      this.scheduleFlush();
    });
  }

  // ---- reports from runners --------------------------------------------------------------------

  started(runnerId: string, refs: AttemptRef[]): void {
    for (const ref of refs) {
      const t = this.current(ref, runnerId);
      if (t && t.state === 'assigned') this.change(t, 'running');
    }
  }

  /** Applies results; resolves once they are durable, with how many were accepted or stale. */
  async results(runnerId: string, results: AttemptResult[]): Promise<{ accepted: number; stale: number }> {
    let accepted = 0;
    let stale = 0;
    for (const res of results) {
      const t = this.current(res, runnerId);
      if (!t) {
        stale++;
        this.stats.stale++;
        this.opts.logger.info('stale result ignored', { taskId: res.id, attempt: res.attempt, runnerId });
        continue;
      }
      accepted++;
      const r = this.runners.get(runnerId);
      if (r && t.assignedAt) this.runners.recordRunTime(r, t.module, Date.now() - t.assignedAt);
      this.freeSlot(t);
      if (res.ok) this.complete(t, res.result, res.moduleHash);
      else this.attemptFailed(t, res.error, res.unrecoverable === true, res.moduleHash);
    }
    this.scheduleDistribute();
    this.scheduleFlush();
    await this.store.barrier();
    return { accepted, stale };
  }

  /**
   * The task this report is about, if the report is for the attempt running now on this runner (the
   * caller has checked that the reporting connection holds `runnerId`). A task that is ready again —
   * requeued, or waiting out its retry backoff — runs nowhere, so nothing may finish it.
   */
  private current(ref: AttemptRef, runnerId: string): TaskRecord | undefined {
    const t = this.tasks.get(ref.id);
    if (!t || t.attempts !== ref.attempt || t.who !== runnerId) return undefined;
    return t.state === 'assigned' || t.state === 'running' ? t : undefined;
  }

  private freeSlot(t: TaskRecord): void {
    const r = t.who ? this.runners.get(t.who) : undefined;
    if (r) this.runners.unhold(r, t.id, t.priority);
    this.orphans.delete(t);
  }

  private complete(t: TaskRecord, result: unknown, moduleHash?: string): void {
    t.result = result === undefined ? null : result;
    t.moduleHash = moduleHash ?? null;
    t.error = null;
    this.change(t, 'done');
    if (t.state !== 'done') {
      // The result cannot be stored (EPERSIST): the task failed after all, and so do its dependents.
      this.stats.failed++;
      this.finish(t);
      this.releaseHeld(t);
      for (const d of t.dependents) this.failForGood(d, depError(t.id, t.error));
      return;
    }
    this.stats.done++;
    this.finish(t);
    this.releaseHeld(t);
    for (const d of t.dependents) this.dependencySettled(d);
  }

  /** One of `d`'s dependencies is done (or, for a broadcast, any of its copies is final). */
  private dependencySettled(d: TaskRecord): void {
    if (d.state !== 'waiting') return;
    if (--d.pending > 0) return;
    if (d.fanout) return this.completeBroadcast(d);
    this.change(d, 'ready');
    this.enqueue(d);
  }

  /** Every copy of a broadcast is final: it is done, its result one outcome per runner. */
  private completeBroadcast(p: TaskRecord, stored?: Map<string, StoredState>): void {
    const result: Record<string, unknown> = {};
    for (const id of p.dependencies) {
      const o = this.finals.get(id) ?? stored?.get(id);
      const runner = id.slice(id.lastIndexOf('@') + 1);
      if (o)
        result[runner] =
          o.state === 'done' ? { state: o.state, result: o.result } : { state: o.state, error: o.error };
    }
    this.complete(p, result);
  }

  /** A broadcast becomes one copy per connected runner that may run it, pinned there, and itself waits for them. */
  private expandBroadcasts(
    parsed: ParsedTaskInput[],
  ): (ParsedTaskInput & { presetId?: string; copy?: boolean; fanout?: boolean })[] {
    if (!parsed.some((p) => p.broadcast)) return parsed;
    const out: (ParsedTaskInput & { presetId?: string; copy?: boolean; fanout?: boolean })[] = [];
    for (const p of parsed) {
      if (!p.broadcast) {
        out.push(p);
        continue;
      }
      const presetId = new mongoose.Types.ObjectId().toHexString();
      const id = p.id ?? presetId;
      const runners = [...this.runners.values()].filter(
        (r) => r.connected && !r.legacy && !r.draining && eligible(r, { requires: p.requires ?? null }),
      );
      const copies = runners.map((r) => ({
        ...p,
        id: `${id}@${r.id}`,
        runner: r.id,
        broadcast: false,
        copy: true,
      }));
      out.push(...copies);
      out.push({ ...p, id, presetId, dependencies: copies.map((c) => c.id), fanout: true });
    }
    return out;
  }

  private attemptFailed(
    t: TaskRecord,
    error: ReportedError,
    unrecoverable: boolean,
    moduleHash?: string,
  ): void {
    t.moduleHash = moduleHash ?? t.moduleHash ?? null;
    if (!unrecoverable && t.attempts - (t.uncounted ?? 0) < t.maxAttempts) {
      t.who = null;
      t.error = error;
      this.change(t, 'ready');
      this.stats.retried++;
      const b = t.backoff ?? this.opts.retryBackoff;
      const wait =
        b.delay > 0
          ? backoffDelay(t.attempts - 1, {
              base: b.delay,
              cap: b.maxDelay ?? 60_000,
              factor: b.type === 'fixed' ? 1 : 2,
              jitter: b.jitter ?? true,
            })
          : 0;
      if (wait <= 0) this.enqueue(t);
      else {
        const timer = setTimeout(() => {
          this.retryTimers.delete(timer);
          if (t.state === 'ready' && this.tasks.get(t.id) === t) this.enqueue(t);
        }, wait);
        timer.unref();
        this.retryTimers.add(timer);
      }
      return;
    }
    this.failForGood(t, error);
  }

  /** Final failure, and every task that depends on it (transitively) fails with EDEPFAILED. */
  private failForGood(t: TaskRecord, error: ReportedError, state: 'failed' | 'cancelled' = 'failed'): void {
    const stack: [TaskRecord, ReportedError, 'failed' | 'cancelled'][] = [[t, error, state]];
    while (stack.length > 0) {
      const [x, err, st] = stack.pop() as [TaskRecord, ReportedError, 'failed' | 'cancelled'];
      if (isFinal(x.state)) continue;
      const runner = x.who ? this.runners.get(x.who) : undefined;
      if (runner && (x.state === 'assigned' || x.state === 'running')) {
        // Stop the attempt where it runs; whatever it reports later is stale.
        this.runners.cancel(runner, [{ id: x.id, attempt: x.attempts }], err.code);
      }
      this.freeSlot(x);
      if (x.heldBy) this.unholdFrom(x);
      x.error = err;
      this.change(x, st);
      if (st === 'cancelled') this.stats.cancelled++;
      else this.stats.failed++;
      this.finish(x);
      this.releaseHeld(x);
      for (const d of x.dependents) {
        // A broadcast reports each copy's outcome, failed ones included.
        if (d.fanout) this.dependencySettled(d);
        else stack.push([d, depError(x.id, err), 'failed']);
      }
    }
  }

  private finish(t: TaskRecord): void {
    t.finishedAt = Date.now();
    this.tasks.delete(t.id);
    this.timed.delete(t);
    if (t.key && this.leaders.get(t.key) === t) this.leaders.delete(t.key);
    const outcome: TaskOutcome = {
      id: t.id,
      batch: t.batch,
      state: t.state as TaskOutcome['state'],
      attempts: t.attempts,
      ...(t.state === 'done' ? { result: t.result } : { error: t.error ?? undefined }),
      ...(t.moduleHash ? { moduleHash: t.moduleHash } : {}),
    };
    this.finals.set(t.id, outcome);
    if (this.finals.size > this.opts.finalCacheSize) {
      const oldest = this.finals.keys().next().value as string;
      this.finals.delete(oldest);
    }
    this.pendingOutcomes.push(outcome);
  }

  private enqueue(t: TaskRecord): void {
    t.seq = ++this.seq;
    t.readyAt = Date.now();
    this.ready.push({ priority: t.priority, seq: t.seq, task: t });
    this.scheduleDistribute();
  }

  /**
   * Records a change. Its document shows it before it takes effect (the writer's next write, which
   * assignments, outcomes and acknowledgements wait for) — except `running`, which nobody waits for
   * and a restart does not need (it treats assigned and running alike): that one is written lazily.
   */
  private change(t: TaskRecord, state: TaskState): void {
    const prev = t.state;
    t.state = state;
    t.rev++;
    for (const o of this.observers) o.changed(t, prev);
    if (state === 'running') return this.store.fold(t);
    const refused = this.store.update(t);
    if (refused) this.persistFailed(t, refused);
  }

  /**
   * The database cannot store this task's latest change (its result, say): the task fails with
   * EPERSIST instead, in memory, in the outcome about to be delivered, and in `tasks`. A restart
   * finds it failed, so it never runs again.
   */
  private persistFailed(t: TaskRecord, error: WireError): void {
    const prev = t.state;
    t.state = 'failed';
    for (const o of this.observers) o.changed(t, prev);
    t.result = undefined;
    t.error = error;
    const o = this.finals.get(t.id);
    if (o) {
      o.state = 'failed';
      delete o.result;
      o.error = error;
    }
    if (this.store.update(t)) this.opts.logger.error('even the failure cannot be stored', { taskId: t.id });
  }

  /** The server refused a task's new state when it was written; the failure replaces it. */
  private stateRefused(t: TaskRecord, error: WireError): void {
    if (t.state === 'done') {
      this.stats.done--;
      this.stats.failed++;
    }
    this.persistFailed(t, error);
  }

  // ---- runners coming and going ----------------------------------------------------------------

  /**
   * A runner said hello (first time or after a reconnect). It keeps the attempts it reports that are
   * still its own; the rest of what it reports must be dropped. Attempts the master thought it held
   * but it does not report are lost: they are retried.
   */
  runnerUp(entry: RunnerEntry, holding: AttemptRef[]): AttemptRef[] {
    const prev = this.runners.get(entry.id);
    if (this.drained.has(entry.id)) this.runners.setDraining(entry, true); // a drain outlives reconnects
    if (prev) this.runners.setLostTimer(prev, null);
    const drop: AttemptRef[] = [];
    const keep = new Set<string>();
    for (const ref of holding) {
      const t = this.tasks.get(ref.id);
      // Only the attempt this runner was given: a task requeued since runs nowhere until reassigned.
      const mine =
        t &&
        t.attempts === ref.attempt &&
        t.who === entry.id &&
        (t.state === 'assigned' || t.state === 'running');
      if (!mine || !t) {
        drop.push(ref);
        continue;
      }
      if (this.orphans.has(t)) {
        // Adopt: a recovered attempt that is in fact still running here.
        this.orphans.delete(t);
        t.who = entry.id;
        this.change(t, 'running');
      }
      keep.add(t.id);
      this.runners.hold(entry, t.id, t.priority);
    }
    if (prev) {
      for (const id of prev.active) {
        const t = this.tasks.get(id);
        if (t && !keep.has(id)) this.lose(t, 'the runner came back without this attempt');
      }
    }
    this.runners.put(entry);
    this.scheduleDistribute();
    this.scheduleFlush();
    return drop;
  }

  /** The runner's connection closed: its attempts wait `graceMs` for it to come back, then are retried. */
  runnerDown(runnerId: string, graceMs = this.opts.disconnectGraceMs): void {
    const r = this.runners.get(runnerId);
    if (!r) return;
    this.runners.markDown(r);
    const expire = () => {
      if (r.connected || !this.runners.remove(r)) return;
      this.opts.logger.info('runner left: it did not come back in time', {
        runnerId,
        attemptsRetried: r.active.size,
      });
      for (const id of r.active) {
        const t = this.tasks.get(id);
        if (t) this.lose(t, `runner ${runnerId} went away`);
      }
      this.runners.clearActive(r);
      this.scheduleDistribute();
      this.scheduleFlush();
    };
    if (graceMs <= 0 || this.closed) expire();
    else {
      this.runners.setLostTimer(r, setTimeout(expire, graceMs).unref());
    }
  }

  private lose(t: TaskRecord, why: string): void {
    if (isFinal(t.state) || t.state === 'ready' || t.state === 'waiting') return;
    this.freeSlot(t);
    this.attemptFailed(t, wireError('ERUNNERLOST', why), false);
  }

  // ---- recovery --------------------------------------------------------------------------------

  /** Rebuilds memory from the database after a start: every `tasks` document not final. */
  async recover(): Promise<{ tasks: number; orphans: number; dropped: number }> {
    for (const a of await this.store.loadAllocations()) this.allocations.set(a.key, a.runner);
    const { docs, journal, dropped } = await this.store.loadForRecovery();
    const open: TaskRecord[] = [];
    for (const d of docs) {
      const t = recordOf(d, this.opts.maxAttempts);
      const j = journal.get(t.id);
      if (j) {
        // The journal holds a newer state than the document: take it, and write it into `tasks`.
        const c = j.change;
        Object.assign(t, {
          rev: c.rev,
          state: c.state,
          attempts: c.attempts,
          who: c.who ?? null,
          assignedAt: c.when ?? null,
          finishedAt: c.completed ?? null,
          result: c.result,
          error: (c.error as TaskRecord['error']) ?? null,
          moduleHash: c.moduleHash ?? t.moduleHash ?? null,
          uncounted: c.uncounted ?? t.uncounted,
        });
        this.store.adoptJournal(t, j.refs);
      }
      this.tasks.set(t.id, t);
      if (isFinal(t.state)) {
        const finishedAt = t.finishedAt;
        this.finish(t);
        t.finishedAt = finishedAt ?? t.finishedAt;
        continue;
      }
      open.push(t);
    }
    const outside = new Set<string>();
    for (const t of open) for (const d of t.dependencies) if (!this.tasks.has(d)) outside.add(d);
    const outsideStates = await this.store.fetchStates([...outside].filter((id) => !this.finals.has(id)));
    const failed: [TaskRecord, WireError][] = [];
    for (const t of open) {
      const failedDep = this.linkDependencies(t, outsideStates);
      if (failedDep) failed.push([t, failedDep]);
      // A broadcast whose copies all finished before the restart.
      else if (t.fanout && t.pending === 0 && t.state === 'waiting') this.completeBroadcast(t, outsideStates);
    }
    for (const t of open) {
      if (t.deadline || t.assignTimeout) this.track(t);
      if (t.state === 'waiting' && t.pending === 0) this.change(t, 'ready');
      if (t.state === 'ready') this.enqueue(t);
      else if (t.state === 'assigned' || t.state === 'running') this.orphans.add(t);
    }
    for (const [t, err] of failed) this.failForGood(t, err);
    const orphans = this.orphans.size;
    if (orphans > 0) {
      const timer = setTimeout(() => {
        for (const t of [...this.orphans]) {
          this.orphans.delete(t);
          if (t.state !== 'assigned' && t.state !== 'running') continue;
          this.requeueUncounted(t);
        }
        this.scheduleFlush();
      }, this.opts.recoveryGraceMs);
      timer.unref();
    }
    this.scheduleFlush();
    await this.store.barrier();
    return { tasks: open.length, orphans, dropped };
  }

  // ---- holding similar work (holdSimilarWork) -------------------------------------------------

  private holdBehind(t: TaskRecord, leader: TaskRecord): void {
    (leader.held ??= []).push(t);
    t.heldBy = leader;
    this.stats.held++;
  }

  private unholdFrom(t: TaskRecord): void {
    const list = t.heldBy?.held;
    if (list) list.splice(list.indexOf(t), 1);
    t.heldBy = null;
  }

  /** The leader reached a final state: its held tasks share its outcome, or run on their own if it was cancelled. */
  private releaseHeld(leader: TaskRecord): void {
    const held = leader.held ?? [];
    leader.held = [];
    for (const t of held) {
      t.heldBy = null;
      if (isFinal(t.state)) continue;
      if (leader.state === 'done') {
        t.result = leader.result;
        t.moduleHash = leader.moduleHash ?? null;
        this.change(t, 'done');
        this.stats.done++;
        this.finish(t);
        for (const d of t.dependents) this.dependencySettled(d);
      } else if (leader.state === 'failed') {
        this.failForGood(t, leader.error ?? wireError('ETASK'));
      } else {
        this.enqueue(t);
      }
    }
  }

  // ---- sticky allocation (affinity) ---------------------------------------------------------

  /**
   * The runner a task's affinity key belongs to, allocating it now if it has none: among the
   * available runners (connected, not drained, matching the task), by the allocator. A key stays
   * with its runner while that runner is drained or away, until it is deallocated.
   */
  private allocationFor(t: TaskRecord): string | null {
    const key = t.affinity as string;
    const known = this.allocations.get(key);
    if (known) return known;
    const ids = [...this.runners.values()]
      .filter((r) => r.connected && !r.draining && !r.legacy && eligible(r, t))
      .map((r) => r.id)
      .sort();
    if (ids.length === 0) return null;
    const chosen = (this.opts.allocate ?? hashAllocate)(key, ids);
    if (!chosen || !ids.includes(chosen)) return null;
    this.allocations.set(key, chosen);
    this.store.allocate({ key, runner: chosen, at: Date.now() });
    return chosen;
  }

  /** Forgets a key's runner; its next task is allocated afresh. */
  deallocate(key: string): boolean {
    if (!this.allocations.delete(key)) return false;
    this.store.deallocate(key);
    this.scheduleDistribute();
    return true;
  }

  allocationsOf(runnerId?: string): { key: string; runner: string }[] {
    const out: { key: string; runner: string }[] = [];
    for (const [key, runner] of this.allocations)
      if (!runnerId || runner === runnerId) out.push({ key, runner });
    return out;
  }

  /**
   * A runner gives back attempts it will not finish (it is shutting down): they are requeued at once,
   * without counting as a failure. Returns how many were still its own.
   */
  release(runnerId: string, refs: AttemptRef[]): number {
    let n = 0;
    for (const ref of refs) {
      const t = this.current(ref, runnerId);
      if (!t || (t.state !== 'assigned' && t.state !== 'running')) continue;
      this.freeSlot(t);
      this.requeueUncounted(t);
      n++;
    }
    this.scheduleFlush();
    return n;
  }

  /**
   * Requeue without counting a failure: the attempt was lost through no fault of the task (its
   * runner gave it back, or never came back after a master restart). Attempt numbers keep growing
   * (they fence late reports); `uncounted` keeps this one out of `maxAttempts`.
   */
  private requeueUncounted(t: TaskRecord): void {
    t.who = null;
    t.uncounted = (t.uncounted ?? 0) + 1;
    this.change(t, 'ready');
    this.enqueue(t);
  }

  /** Resolves once every change made so far is durable. */
  flushed(): Promise<void> {
    return this.store.barrier();
  }

  // ---- draining ----------------------------------------------------------------------------

  /** Stops giving the runner new work; its running attempts finish. Returns false for an unknown runner. */
  drain(runnerId: string): boolean {
    const r = this.runners.get(runnerId);
    if (!r) return false;
    this.drained.add(runnerId);
    this.runners.setDraining(r, true);
    this.opts.logger.info('runner drained: no new work', { runnerId, running: r.active.size });
    return true;
  }

  /** Lets a drained runner take work again. */
  undrain(runnerId: string): boolean {
    const r = this.runners.get(runnerId);
    this.drained.delete(runnerId);
    if (!r) return false;
    this.runners.setDraining(r, false);
    this.opts.logger.info('runner undrained: takes work again', { runnerId });
    this.scheduleDistribute();
    return true;
  }

  // ---- cancelling ----------------------------------------------------------------------------

  /** Cancels tasks by id and/or batch; returns the ids cancelled (final ones are left alone). */
  cancel(ids: string[] | undefined, batch: string | undefined, by = 'a feeder'): string[] {
    const targets: TaskRecord[] = [];
    for (const id of ids ?? []) {
      const t = this.tasks.get(id);
      if (t) targets.push(t);
    }
    if (batch) for (const t of this.tasks.values()) if (t.batch === batch) targets.push(t);
    const cancelled: string[] = [];
    for (const t of targets) {
      if (isFinal(t.state)) continue;
      this.failForGood(t, wireError('ECANCELLED', `cancelled by ${by}`), 'cancelled');
      cancelled.push(t.id);
    }
    this.scheduleDistribute();
    this.scheduleFlush();
    return cancelled;
  }

  // ---- running again (operator retry) --------------------------------------------------------

  /**
   * Operator retry, "rerun from failed": final tasks run again.
   * Precondition: `docs` are stored tasks, current (the caller awaited the barrier), in dependency
   * order; `stored` holds the states of their dependencies that are neither in memory nor in `docs`.
   * Effect: each failed or cancelled task whose dependencies are done, live, or revived before it
   * goes back to waiting (or ready), with a fresh attempt budget: `uncounted` becomes the attempts so
   * far, so attempt numbers keep growing and still fence late reports from older attempts.
   * Record: the new state, written to its document with the next `rev` (a restart recovers it).
   * Outcome: the ids revived, and the refused ones with the reason.
   */
  revive(
    docs: TaskDoc[],
    stored: Map<string, StoredState>,
  ): { revived: string[]; refused: { id: string; error: WireError }[] } {
    const revived: string[] = [];
    const refused: { id: string; error: WireError }[] = [];
    for (const d of docs) {
      const refuse = (message: string) => refused.push({ id: d._id, error: wireError('ESTATE', message) });
      if (this.tasks.has(d._id)) {
        refuse(`task "${d._id}" is ${this.tasks.get(d._id)?.state}, not failed or cancelled`);
        continue;
      }
      if (d.state !== 'failed' && d.state !== 'cancelled') {
        refuse(`task "${d._id}" is ${d.state}, not failed or cancelled`);
        continue;
      }
      if (d.broadcast) {
        refuse(`task "${d._id}" is a broadcast: add it again instead`);
        continue;
      }
      const blocked = (d.dependencies ?? []).find(
        (dep) => !this.tasks.has(dep) && (this.finals.get(dep) ?? stored.get(dep))?.state !== 'done',
      );
      if (blocked) {
        refuse(`dependency "${blocked}" did not succeed: retry it, and this task runs again after it`);
        continue;
      }
      const t = recordOf(d, this.opts.maxAttempts);
      t.error = null;
      t.who = null;
      t.uncounted = t.attempts;
      // A call timeout belongs to the call that added the task, which is over.
      t.deadline = null;
      this.tasks.set(t.id, t);
      this.finals.delete(t.id);
      this.linkDependencies(t, stored);
      this.change(t, t.pending > 0 ? 'waiting' : 'ready');
      if (t.state === 'ready') this.enqueue(t);
      if (t.assignTimeout) this.track(t);
      this.stats.retried++;
      revived.push(t.id);
    }
    this.scheduleDistribute();
    this.scheduleFlush();
    return { revived, refused };
  }

  // ---- timeouts and the queue ----------------------------------------------------------------

  private track(t: TaskRecord): void {
    this.timed.add(t);
    if (this.sweepTimer) return;
    this.sweepTimer = setInterval(() => this.sweep(), this.opts.timeoutSweepMs);
    this.sweepTimer.unref();
  }

  private sweep(): void {
    const now = Date.now();
    for (const t of this.timed) {
      if (isFinal(t.state)) {
        this.timed.delete(t);
        continue;
      }
      if (t.deadline && now >= t.deadline) {
        this.failForGood(t, wireError('ECSTO', `no result within ${t.timeout} ms of the call`));
      } else if (
        t.assignTimeout &&
        t.state === 'ready' &&
        !t.heldBy &&
        t.readyAt &&
        now - t.readyAt >= t.assignTimeout
      ) {
        this.failForGood(t, wireError('EATO', `no runner took the task within ${t.assignTimeout} ms`));
        const o = this.finals.get(t.id);
        if (o) this.emit('assigntimeout', o);
      }
    }
    if (this.timed.size === 0 && this.sweepTimer) {
      clearInterval(this.sweepTimer);
      this.sweepTimer = null;
    }
    this.scheduleDistribute();
    this.scheduleFlush();
  }

  /** Tasks stored but not running: what `queueLimit` bounds. */
  queuedCount(): number {
    let n = 0;
    for (const t of this.tasks.values()) if (t.state === 'waiting' || t.state === 'ready') n++;
    return n;
  }

  /** A hint for a refused add: about the time the runners need to free a tenth of the limit, at least 100 ms. */
  private retryAfterHint(): number {
    let slots = 0;
    for (const r of this.runners.values()) if (r.connected) slots += r.slots;
    return slots === 0
      ? 1000
      : Math.min(10_000, Math.max(100, Math.round((this.opts.queueLimit / 10 / slots) * 100)));
  }

  // ---- watching --------------------------------------------------------------------------------

  /** Outcomes already final among these ids; ids the master does not know at all. */
  async lookup(ids: string[]): Promise<{ outcomes: TaskOutcome[]; unknown: string[] }> {
    const outcomes: TaskOutcome[] = [];
    const ask: string[] = [];
    for (const id of ids) {
      const f = this.finals.get(id);
      if (f) outcomes.push(f);
      else if (!this.tasks.has(id)) ask.push(id);
    }
    const stored = await this.store.fetchStates(ask);
    const unknown: string[] = [];
    for (const id of ask) {
      const s = stored.get(id);
      if (s && isFinal(s.state)) {
        outcomes.push({
          id,
          batch: s.batch,
          state: s.state as TaskOutcome['state'],
          attempts: s.attempts,
          ...(s.state === 'done' ? { result: s.result } : { error: s.error ?? undefined }),
        });
      } else unknown.push(id);
    }
    return { outcomes, unknown };
  }

  /** Purged tasks: their outcomes are forgotten, so their ids can be used again. */
  forgetFinals(ids: string[]): void {
    for (const id of ids) this.finals.delete(id);
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const r of this.runners.values()) if (r.lostTimer) clearTimeout(r.lostTimer);
    for (const t of this.retryTimers) clearTimeout(t);
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    await this.store.barrier();
  }
}

/** atributo's default: the key's hash, as a 32-bit integer, indexes the available runners. */
export function hashAllocate(key: string, runnerIds: string[]): string | undefined {
  if (runnerIds.length === 0) return undefined;
  const n = createHash('sha256').update(key).digest().readUInt32BE(0);
  return runnerIds[n % runnerIds.length];
}

function depError(dep: string, err: ReportedError | null | undefined): WireError {
  return wireError('EDEPFAILED', `dependency "${dep}" failed${err ? `: ${err.code} ${err.message}` : ''}`);
}

/** The document an add writes: only what differs from the defaults. */
function taskDoc(t: TaskRecord): TaskDoc {
  const d: TaskDoc = {
    _id: t.id,
    batch: t.batch,
    module: t.module,
    params: t.params,
    state: t.state,
    attempts: 0,
    maxAttempts: t.maxAttempts,
    created: t.created,
    updated: t.created,
    rev: 0,
  };
  if (t.priority) d.priority = t.priority;
  if (t.dependencies.length > 0) d.dependencies = t.dependencies;
  if (t.timeout) d.timeout = t.timeout;
  if (t.runTimeout) d.runTimeout = t.runTimeout;
  if (t.assignTimeout) d.assignTimeout = t.assignTimeout;
  if (t.deadline) d.deadline = t.deadline;
  if (t.key) d.key = t.key;
  if (t.affinity) d.affinity = t.affinity;
  if (t.backoff) d.backoff = t.backoff;
  if (t.requires) d.requires = t.requires;
  if (t.runner) d.runner = t.runner;
  if (t.fanout) d.broadcast = true;
  return d;
}

/** A task record from its stored document (recovery). */
function recordOf(d: TaskDoc, maxAttempts: number): TaskRecord {
  return {
    _id: d._id,
    id: d._id,
    module: d.module,
    params: d.params ?? [],
    priority: d.priority ?? 0,
    dependencies: d.dependencies ?? [],
    batch: d.batch,
    created: d.created,
    state: d.state,
    attempts: d.attempts ?? 0,
    maxAttempts: d.maxAttempts ?? maxAttempts,
    rev: d.rev ?? 0,
    pending: 0,
    dependents: [],
    who: d.assigned?.who ?? null,
    assignedAt: d.assigned?.when ?? null,
    result: d.result,
    error: d.error ?? null,
    moduleHash: d.moduleHash ?? null,
    runTimeout: d.runTimeout ?? null,
    timeout: d.timeout ?? null,
    assignTimeout: d.assignTimeout ?? null,
    deadline: d.deadline ?? null,
    seq: 0,
    key: d.key ?? null,
    affinity: d.affinity ?? null,
    backoff: d.backoff ?? null,
    requires: (d.requires as TaskRecord['requires']) ?? null,
    runner: d.runner ?? null,
    fanout: d.broadcast === true,
    uncounted: d.uncounted ?? 0,
  };
}

/**
 * The scheduler's core: the ready queue, distribution, the flush after each durable write, and the
 * transitions of a task — one named method each, asserted against the table in protocol/states.ts
 * and recorded through the store (master/task-store.ts). The policies it composes own their state
 * and answer for themselves (master/policies/): eligibility, slots, parking (hold-similar-work),
 * affinity, runner selection, retries, timeouts, recovery. `explain` asks them in the order
 * `distribute` applies them.
 *
 * Fencing: every assignment carries its attempt number; a report for any other attempt than the
 * task's current one is stale and ignored (`holdsAttempt`), so a late runner never overwrites a newer
 * attempt. Durability before effect: assignments are sent, add replies and outcomes delivered, and
 * runners' results acknowledged only after the store's barrier, i.e. once the change is in the
 * database.
 */
import { EventEmitter } from 'node:events';
import { newId } from '../common/ids';
import type { Logger } from '../common/logger';
import { wireError, type WireError } from '../protocol/errors';
import type { AttemptRef } from '../protocol/events';
import type { AddReply, Assignment, AttemptResult, ParsedTaskInput, TaskOutcome } from '../protocol/schemas';
import { assertTransition, isFinal, type TaskState } from '../protocol/states';
import type { TaskDoc } from '../models/task';
import { Affinity, type Allocator } from './policies/affinity';
import { eligible, explainEligibility, placeable } from './policies/eligibility';
import { Parking } from './policies/parking';
import { reason, type Reason, type ReasonCode } from './policies/reason';
import { applyJournal, recordFromDoc } from './policies/recovery';
import { RetryPolicy } from './policies/retry';
import { selectMostAvailable, type RunnerSelector } from './policies/selection';
import { canTake, explainCapacity, explainRunnerState } from './policies/slots';
import { Timeouts } from './policies/timeouts';
import { ReadyQueue } from './ready-queue';
import { freeSlots, RunnerRegistry, type RunnerEntry } from './runner-registry';
import type { StoredState } from './store';
import { newTaskRecord, type Backoff, type TaskRecord } from './task-record';
import type { TaskStore } from './task-store';
import { checkLimits, collectIds, collectRefs, summarize, validateBatch } from './validate';

export interface SchedulerOptions {
  maxAttempts: number;
  recoveryGraceMs: number;
  disconnectGraceMs: number;
  /** Final outcomes kept in memory for watchers and dependency checks. */
  finalCacheSize: number;
  selectRunner?: RunnerSelector;
  /** Largest task, as JSON, an add accepts (EVALIDATION). Default: unlimited. */
  maxTaskBytes?: number;
  /** Waiting + ready tasks allowed at once; an add beyond it is refused with EQUEUEFULL. */
  queueLimit: number;
  /** Run one task per `key` at a time; the others are parked behind it and get its outcome. */
  holdSimilarWork: boolean;
  /** Chooses the runner for a new affinity key among the available ones (sorted ids). Default: hash of the key. */
  allocate?: Allocator;
  /** Delay before a retry unless the task says otherwise. */
  retryBackoff: Backoff;
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

/** Whether `t`'s current attempt is `attempt`, held by `runnerId`: the fence every report passes. */
export function holdsAttempt(t: TaskRecord, attempt: number, runnerId: string): boolean {
  return t.attempts === attempt && t.who === runnerId && (t.state === 'assigned' || t.state === 'running');
}

/** The final outcome delivered to feeders, from a record or a stored state. */
export function outcomeOf(s: {
  id: string;
  batch: string;
  state: TaskState;
  attempts: number;
  result?: unknown;
  error?: WireError | null;
  moduleHash?: string | null;
}): TaskOutcome {
  return {
    id: s.id,
    batch: s.batch,
    state: s.state as TaskOutcome['state'],
    attempts: s.attempts,
    ...(s.state === 'done' ? { result: s.result } : { error: s.error ?? undefined }),
    ...(s.moduleHash ? { moduleHash: s.moduleHash } : {}),
  };
}

export class Scheduler extends EventEmitter<SchedulerEvents> {
  readonly tasks = new Map<string, TaskRecord>();
  readonly finals = new Map<string, TaskOutcome>();
  readonly runners = new RunnerRegistry();
  private readonly ready = new ReadyQueue<QueueEntry>();
  private seq = 0;
  private distributeScheduled = false;
  /** Assignments made since the last flush, sent once they are durable. */
  private unsent = new Map<RunnerEntry, Assignment[]>();
  /** Outcomes made final since the last flush, delivered once they are durable. */
  private undelivered: TaskOutcome[] = [];
  private flushScheduled = false;
  /** Recovered attempts waiting for their runner to come back and keep them. */
  private orphans = new Set<TaskRecord>();
  private readonly parking: Parking;
  private readonly affinity: Affinity;
  private readonly retries: RetryPolicy;
  private readonly timeouts: Timeouts;
  private readonly select: RunnerSelector;
  /** Runner ids an operator drained: they get no new work, across reconnects. */
  private drainedByOperator = new Set<string>();
  private closed = false;
  /** Counters for status and benchmarks (`held`: tasks parked behind a leader with their key). */
  readonly stats = { added: 0, assigned: 0, done: 0, failed: 0, retried: 0, stale: 0, held: 0, cancelled: 0 };
  readonly observers: TaskObserver[] = [];

  constructor(
    private readonly store: TaskStore,
    private readonly opts: SchedulerOptions,
  ) {
    super();
    this.parking = new Parking(opts.holdSimilarWork);
    this.affinity = new Affinity(store, opts.allocate);
    this.retries = new RetryPolicy(opts.retryBackoff);
    this.timeouts = new Timeouts(opts.timeoutSweepMs, {
      expired: (t, error) => this.timedOut(t, error),
      swept: () => {
        this.scheduleDistribute();
        this.scheduleFlush();
      },
    });
    this.select = opts.selectRunner ?? selectMostAvailable;
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
    const batch = batchName ?? newId();
    const now = Date.now();
    const inputs = this.expandBroadcasts(parsed);
    const records: TaskRecord[] = inputs.map((p) =>
      newTaskRecord({
        id: p.id ?? p.presetId ?? newId(),
        module: p.module,
        params: p.params,
        priority: p.priority,
        dependencies: p.dependencies,
        batch,
        created: now,
        state: 'waiting',
        maxAttempts: p.maxAttempts ?? this.opts.maxAttempts,
        runTimeout: p.runTimeout,
        timeout: p.timeout,
        assignTimeout: p.assignTimeout,
        deadline: p.timeout ? (calledAt ?? now) + p.timeout : null,
        key: p.key,
        affinity: p.affinity,
        backoff: p.backoff,
        requires: p.requires,
        runner: p.runner,
        fanout: p.fanout,
      }),
    );
    // Everything that can refuse the add does so before memory changes.
    const prepared = this.store.prepareTasks(records.map(taskDoc));
    if ('error' in prepared) return { ok: false, error: prepared.error };
    for (const t of records) this.tasks.set(t.id, t);
    const depFailed: [TaskRecord, WireError][] = [];
    records.forEach((t, i) => {
      const failedDep = this.linkDependencies(t, stored);
      if (failedDep) depFailed.push([t, failedDep]);
      else if (t.fanout && t.unmet === 0)
        depFailed.push([t, wireError('EATO', 'no connected runner to broadcast to')]);
      // The first state, not a change: the insert below writes it.
      else if (t.unmet === 0) t.state = 'ready';
      prepared.docs[i].state = t.state;
    });
    const written = this.store.insertTasks(prepared.docs);
    for (const o of this.observers) o.added(records);
    for (const t of records) {
      if (t.state === 'ready') this.enqueue(t);
      this.timeouts.track(t);
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
   * stored), and tasks of other adds that depend on them fail with EDEPFAILED. Not a transition:
   * the records cease to exist; `failed` only marks them final for anything still holding one.
   */
  private discard(records: TaskRecord[], error: WireError): void {
    const gone = new Set(records);
    for (const o of this.observers) o.discarded(records);
    for (const t of records) {
      this.tasks.delete(t.id);
      this.finals.delete(t.id);
      this.timeouts.forget(t);
      this.store.forget(t.id);
      if (t.state === 'assigned' || t.state === 'running') this.releaseSlotOf(t);
      this.parking.resign(t);
      if (t.parkedBehind) this.parking.unpark(t);
      t.state = 'failed';
      this.stats.added--;
    }
    this.undelivered = this.undelivered.filter((o) => !records.some((t) => t.id === o.id));
    for (const t of records) {
      for (const h of t.parked ?? []) if (!gone.has(h)) this.enqueue(h);
      for (const d of t.dependents) if (!gone.has(d)) this.failForGood(d, depError(t.id, error));
    }
    this.scheduleDistribute();
  }

  /**
   * Counts a task's unmet dependencies and registers it as their dependent. Dependencies no longer
   * in memory are looked up in `stored`; returns the error to fail the task with if one of them
   * failed, was cancelled, or cannot be found.
   */
  private linkDependencies(t: TaskRecord, stored: Map<string, StoredState>): WireError | null {
    let failed: WireError | null = null;
    for (const d of t.dependencies) {
      const live = this.tasks.get(d);
      if (live) {
        t.unmet++;
        live.dependents.push(t);
        continue;
      }
      const fin = this.finals.get(d) ?? stored.get(d);
      if (!fin) failed ??= wireError('EDEPFAILED', `dependency "${d}" is not in the database`);
      else if (fin.state !== 'done' && !t.fanout) failed ??= depError(d, fin.error);
    }
    return failed;
  }

  /** A broadcast becomes one copy per placeable runner that may run it, pinned there, and itself waits for them. */
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
      const presetId = newId();
      const id = p.id ?? presetId;
      const runners = [...this.runners.values()].filter(
        (r) => placeable(r) && eligible(r, { requires: p.requires ?? null }),
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

  /**
   * Hands ready tasks to runners, highest priority first. The policies in the order they apply (and
   * `explain` asks them): the store not congested, parking, affinity, then per runner its state and
   * slots (`canTake`), eligibility, the key's runner; the selector picks among the runners left.
   */
  private distribute(): void {
    // `tasks` is too far behind: new work waits until the folder catches up (it calls back).
    if (this.store.folder.congested) return;
    let candidates = [...this.runners.values()].filter((r) => freeSlots(r) > 0);
    const skipped: QueueEntry[] = [];
    while (candidates.length > 0 && this.ready.size > 0) {
      const e = this.ready.pop() as QueueEntry;
      const t = e.task;
      if (t.state !== 'ready' || t.seq !== e.seq) continue; // left the queue meanwhile
      const leader = this.parking.leaderOf(t);
      if (leader) {
        this.parking.park(t, leader);
        this.stats.held++;
        continue;
      }
      const owner = t.affinity ? this.affinity.runnerFor(t, this.runners) : null;
      const able = candidates.filter(
        (c) => canTake(c, t.priority) && eligible(c, t) && (!t.affinity || c.id === owner),
      );
      const r = able.length > 0 ? this.select(t, able) : undefined;
      if (!r || !canTake(r, t.priority)) {
        skipped.push(e);
        continue;
      }
      this.assign(t, r);
      if (freeSlots(r) <= 0) candidates = candidates.filter((c) => c !== r);
    }
    for (const e of skipped) this.ready.push(e);
    this.scheduleFlush();
  }

  /** After the changes of this tick are durable: send assignments, deliver outcomes. */
  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    if (this.unsent.size === 0 && this.undelivered.length === 0) return;
    this.flushScheduled = true;
    const assign = this.unsent;
    const outcomes = this.undelivered;
    this.unsent = new Map();
    this.undelivered = [];
    void this.store.barrier().then(() => {
      this.flushScheduled = false;
      for (const [r, list] of assign) {
        // The runner may have gone, or a task been cancelled, while the write was in flight.
        const still = list.filter((a) => {
          const t = this.tasks.get(a.id);
          return t !== undefined && t.state === 'assigned' && holdsAttempt(t, a.attempt, r.id);
        });
        if (still.length > 0 && r.connected) r.send(still);
      }
      if (outcomes.length > 0) this.emit('outcomes', outcomes);
      this.scheduleFlush();
    });
  }

  // ---- transitions -------------------------------------------------------------------------------
  // Each one: precondition (the `from` states, asserted by `record`), effect, the record the store
  // writes, and the outcome. `record` writes the task's document through the journal (`update`,
  // awaited by the next barrier), except `running`, folded lazily (`fold`): nobody waits for it, and a
  // restart treats assigned and running alike.

  /**
   * Records `t`'s change to `to`: asserts the table, bumps `rev`, tells the observers, writes.
   * Throws IllegalTransition (EINTERNAL) for a change the table does not allow.
   */
  private record(t: TaskRecord, to: TaskState): void {
    const prev = t.state;
    assertTransition(t.id, prev, to);
    t.state = to;
    t.rev++;
    for (const o of this.observers) o.changed(t, prev);
    if (to === 'running') return this.store.fold(t);
    const refused = this.store.update(t);
    if (refused) this.persistFailed(t, refused);
  }

  /**
   * markReady. Precondition: waiting, no unmet dependency. Effect: queued by priority.
   * Record: state ready. Outcome: distributed on the next pass.
   */
  private markReady(t: TaskRecord): void {
    this.record(t, 'ready');
    this.enqueue(t);
  }

  /**
   * assign. Precondition: ready, chosen by `distribute` for `r`. Effect: a new attempt (attempts+1)
   * held by `r`, which reserves a slot; the task leads its key (parking). Record: state assigned,
   * attempts, who, when. Outcome: the assignment goes out at the next flush, after the record is durable.
   */
  private assign(t: TaskRecord, r: RunnerEntry): void {
    t.attempts++;
    t.who = r.id;
    t.assignedAt = Date.now();
    this.runners.reserveSlot(r, t.id, t.priority);
    this.parking.lead(t);
    this.record(t, 'assigned');
    this.stats.assigned++;
    let list = this.unsent.get(r);
    if (!list) this.unsent.set(r, (list = []));
    const a: Assignment = {
      id: t.id,
      attempt: t.attempts,
      module: t.module,
      params: t.params,
      priority: t.priority,
      batch: t.batch,
    };
    // The runner enforces the run timeout (ETO; master/policies/timeouts.ts).
    if (t.runTimeout) a.runTimeout = t.runTimeout;
    list.push(a);
  }

  /**
   * markRunning. Precondition: assigned, the report for its current attempt from its runner.
   * Effect: none beyond the state. Record: state running, folded lazily. Outcome: none.
   */
  private markRunning(t: TaskRecord): void {
    this.record(t, 'running');
  }

  /**
   * complete. Precondition: assigned or running (the fenced result of its current attempt), or a
   * waiting broadcast whose copies are all final. Effect: done with its result; its slot is already
   * released by the caller; parked tasks share the result; dependents count one dependency less.
   * Record: state done, result, moduleHash, completed. Outcome: delivered at the next flush. If the
   * result cannot be stored (EPERSIST, see `persistFailed`) the task fails, and its dependents too.
   */
  private complete(t: TaskRecord, result: unknown, moduleHash?: string): void {
    t.result = result === undefined ? null : result;
    t.moduleHash = moduleHash ?? null;
    t.error = null;
    this.record(t, 'done');
    if (t.state !== 'done') {
      this.stats.failed++;
      this.finish(t);
      this.settleParked(t);
      for (const d of t.dependents) this.failForGood(d, depError(t.id, t.error));
      return;
    }
    this.stats.done++;
    this.finish(t);
    this.settleParked(t);
    for (const d of t.dependents) this.dependencySettled(d);
  }

  /**
   * shareOutcome. Precondition: ready, parked behind `leader`, which is done. Effect: done with the
   * leader's result, without running. Record: state done, result. Outcome: delivered at the next flush.
   */
  private shareOutcome(t: TaskRecord, leader: TaskRecord): void {
    t.result = leader.result;
    t.moduleHash = leader.moduleHash ?? null;
    this.record(t, 'done');
    this.stats.done++;
    this.finish(t);
    for (const d of t.dependents) this.dependencySettled(d);
  }

  /**
   * retry. Precondition: assigned or running; the attempt failed and the retry policy allows another.
   * Effect: ready again, counting the attempt; queued now or after the backoff. Record: state ready,
   * error. Outcome: none until a later attempt ends.
   */
  private retry(t: TaskRecord, error: WireError): void {
    t.who = null;
    t.error = error;
    this.record(t, 'ready');
    this.stats.retried++;
    const wait = this.retries.delay(t);
    if (wait <= 0) this.enqueue(t);
    else this.retries.later(t, wait, this.requeueAfterBackoff);
  }

  private readonly requeueAfterBackoff = (t: TaskRecord): void => {
    if (t.state === 'ready' && this.tasks.get(t.id) === t) this.enqueue(t);
  };

  /**
   * requeueUncounted. Precondition: assigned or running; the attempt was lost through no fault of the
   * task (its runner gave it back, or never came back after a master restart). Effect: ready and
   * queued; attempt numbers keep growing (they fence late reports) and `uncounted` keeps this one out
   * of `maxAttempts`. Record: state ready, uncounted. Outcome: none.
   */
  private requeueUncounted(t: TaskRecord): void {
    t.who = null;
    t.uncounted = (t.uncounted ?? 0) + 1;
    this.record(t, 'ready');
    this.enqueue(t);
  }

  /**
   * failForGood. Precondition: not final. Effect: failed (or cancelled); an attempt in flight is
   * cancelled where it runs and its slot released; parked tasks share the failure (or run on their
   * own after a cancel); every task that depends on it fails with EDEPFAILED, transitively (a
   * broadcast counts a failed copy as settled). Record: state, error, for each. Outcome: delivered at
   * the next flush, for each.
   */
  private failForGood(t: TaskRecord, error: WireError, state: 'failed' | 'cancelled' = 'failed'): void {
    const stack: [TaskRecord, WireError, 'failed' | 'cancelled'][] = [[t, error, state]];
    while (stack.length > 0) {
      const [x, err, st] = stack.pop() as [TaskRecord, WireError, 'failed' | 'cancelled'];
      if (isFinal(x.state)) continue;
      const runner = x.who ? this.runners.get(x.who) : undefined;
      if (runner && (x.state === 'assigned' || x.state === 'running')) {
        // Stop the attempt where it runs; whatever it reports later is stale.
        runner.cancel([{ id: x.id, attempt: x.attempts }], err.code);
      }
      this.releaseSlotOf(x);
      if (x.parkedBehind) this.parking.unpark(x);
      x.error = err;
      this.record(x, st);
      if (st === 'cancelled') this.stats.cancelled++;
      else this.stats.failed++;
      this.finish(x);
      this.settleParked(x);
      for (const d of x.dependents) {
        // A broadcast reports each copy's outcome, failed ones included.
        if (d.fanout) this.dependencySettled(d);
        else stack.push([d, depError(x.id, err), 'failed']);
      }
    }
  }

  /**
   * persistFailed. Precondition: the database cannot store `t`'s latest change (its result, say).
   * Effect: failed with EPERSIST instead, in memory and in the outcome about to be delivered.
   * Record: state failed, error (a restart finds it failed, so it never runs again). Outcome: the
   * delivered outcome says failed.
   */
  private persistFailed(t: TaskRecord, error: WireError): void {
    const prev = t.state;
    if (prev !== 'failed') assertTransition(t.id, prev, 'failed');
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

  // ---- around the transitions ----------------------------------------------------------------------

  /** The leader reached a final state: its parked tasks share its outcome, or run on their own if it was cancelled. */
  private settleParked(leader: TaskRecord): void {
    for (const t of this.parking.takeParked(leader)) {
      if (isFinal(t.state)) continue;
      if (leader.state === 'done') this.shareOutcome(t, leader);
      else if (leader.state === 'failed') this.failForGood(t, leader.error ?? wireError('ETASK'));
      else this.enqueue(t);
    }
  }

  /** One of `d`'s dependencies is done (or, for a broadcast, any of its copies is final). */
  private dependencySettled(d: TaskRecord): void {
    if (d.state !== 'waiting') return;
    if (--d.unmet > 0) return;
    if (d.fanout) return this.completeBroadcast(d);
    this.markReady(d);
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

  /** An attempt failed (reported, or its runner lost): retried if the policy allows, else failed for good. */
  private attemptFailed(t: TaskRecord, error: WireError, unrecoverable: boolean, moduleHash?: string): void {
    t.moduleHash = moduleHash ?? t.moduleHash ?? null;
    if (this.retries.mayRetry(t, unrecoverable)) this.retry(t, error);
    else this.failForGood(t, error);
  }

  /** A task's timeout expired (master/policies/timeouts.ts): it fails for good. */
  private timedOut(t: TaskRecord, error: WireError): void {
    this.failForGood(t, error);
    if (error.code !== 'EATO') return;
    const o = this.finals.get(t.id);
    if (o) this.emit('assigntimeout', o);
  }

  /** A final task leaves memory; its outcome is kept (bounded) and queued for delivery. */
  private finish(t: TaskRecord): void {
    t.finishedAt = Date.now();
    this.tasks.delete(t.id);
    this.timeouts.forget(t);
    this.parking.resign(t);
    const outcome = outcomeOf(t);
    this.finals.set(t.id, outcome);
    if (this.finals.size > this.opts.finalCacheSize) {
      const oldest = this.finals.keys().next().value as string;
      this.finals.delete(oldest);
    }
    this.undelivered.push(outcome);
  }

  private enqueue(t: TaskRecord): void {
    t.seq = ++this.seq;
    t.readyAt = Date.now();
    this.ready.push({ priority: t.priority, seq: t.seq, task: t });
    this.scheduleDistribute();
  }

  private releaseSlotOf(t: TaskRecord): void {
    const r = t.who ? this.runners.get(t.who) : undefined;
    if (r) this.runners.releaseSlot(r, t.id, t.priority);
    this.orphans.delete(t);
  }

  // ---- reports from runners --------------------------------------------------------------------

  started(runnerId: string, refs: AttemptRef[]): void {
    for (const ref of refs) {
      const t = this.current(ref, runnerId);
      if (t && t.state === 'assigned') this.markRunning(t);
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
      this.releaseSlotOf(t);
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
    return t && holdsAttempt(t, ref.attempt, runnerId) ? t : undefined;
  }

  /**
   * A runner gives back attempts it will not finish (it is shutting down): they are requeued at once,
   * without counting as a failure. Returns how many were still its own.
   */
  release(runnerId: string, refs: AttemptRef[]): number {
    let n = 0;
    for (const ref of refs) {
      const t = this.current(ref, runnerId);
      if (!t) continue;
      this.releaseSlotOf(t);
      this.requeueUncounted(t);
      n++;
    }
    this.scheduleFlush();
    return n;
  }

  /** Resolves once every change made so far is durable. */
  flushed(): Promise<void> {
    return this.store.barrier();
  }

  // ---- runners coming and going ----------------------------------------------------------------

  /**
   * A runner said hello (first time or after a reconnect). It keeps the attempts it reports that are
   * still its own; the rest of what it reports must be dropped. Attempts the master thought it held
   * but it does not report are lost: they are retried.
   */
  runnerUp(entry: RunnerEntry, holding: AttemptRef[]): AttemptRef[] {
    const prev = this.runners.get(entry.id);
    if (this.drainedByOperator.has(entry.id)) this.runners.setDraining(entry, true); // a drain outlives reconnects
    if (prev) this.runners.setLostTimer(prev, null);
    const drop: AttemptRef[] = [];
    const keep = new Set<string>();
    for (const ref of holding) {
      // Only the attempt this runner was given: a task requeued since runs nowhere until reassigned.
      const t = this.current(ref, entry.id);
      if (!t) {
        drop.push(ref);
        continue;
      }
      if (this.orphans.has(t)) {
        // Adopt: a recovered attempt that is in fact still running here.
        this.orphans.delete(t);
        if (t.state === 'assigned') this.markRunning(t);
      }
      keep.add(t.id);
      this.runners.reserveSlot(entry, t.id, t.priority);
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

  /** An attempt's runner is gone without it: a failure of the attempt (ERUNNERLOST), retried by the policy. */
  private lose(t: TaskRecord, why: string): void {
    if (t.state !== 'assigned' && t.state !== 'running') return;
    this.releaseSlotOf(t);
    this.attemptFailed(t, wireError('ERUNNERLOST', why), false);
  }

  // ---- recovery --------------------------------------------------------------------------------

  /** Rebuilds memory from the database after a start: every `tasks` document not final. */
  async recover(): Promise<{ tasks: number; orphans: number; dropped: number }> {
    this.affinity.load(await this.store.loadAllocations());
    const { docs, journal, dropped } = await this.store.loadForRecovery();
    const open: TaskRecord[] = [];
    for (const d of docs) {
      const t = recordFromDoc(d, this.opts.maxAttempts);
      const j = journal.get(t.id);
      if (j) {
        // The journal holds a newer state than the document: take it, and write it into `tasks`.
        applyJournal(t, j.change);
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
      else if (t.fanout && t.unmet === 0 && t.state === 'waiting') this.completeBroadcast(t, outsideStates);
    }
    for (const t of open) {
      this.timeouts.track(t);
      if (t.state === 'waiting' && t.unmet === 0) this.markReady(t);
      else if (t.state === 'ready') this.enqueue(t);
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

  // ---- affinity (API) ----------------------------------------------------------------------------

  /** Affinity key → runner id. */
  get allocations(): ReadonlyMap<string, string> {
    return this.affinity.allocations;
  }

  /** Forgets a key's runner; its next task is allocated afresh. */
  deallocate(key: string): boolean {
    if (!this.affinity.deallocate(key)) return false;
    this.scheduleDistribute();
    return true;
  }

  allocationsOf(runnerId?: string): { key: string; runner: string }[] {
    return this.affinity.allocationsOf(runnerId);
  }

  // ---- an operator's drain -------------------------------------------------------------------------

  /** Stops giving the runner new work; its running attempts finish. Returns false for an unknown runner. */
  drain(runnerId: string): boolean {
    const r = this.runners.get(runnerId);
    if (!r) return false;
    this.drainedByOperator.add(runnerId);
    this.runners.setDraining(r, true);
    this.opts.logger.info('runner drained: no new work', { runnerId, running: r.active.size });
    return true;
  }

  /** Lets a drained runner take work again. */
  undrain(runnerId: string): boolean {
    const r = this.runners.get(runnerId);
    this.drainedByOperator.delete(runnerId);
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
   * revive: an operator's retry, "rerun from failed": final tasks run again.
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
      const t = recordFromDoc(d, this.opts.maxAttempts);
      t.error = null;
      t.who = null;
      t.uncounted = t.attempts;
      // A call timeout belongs to the call that added the task, which is over.
      t.deadline = null;
      this.tasks.set(t.id, t);
      this.finals.delete(t.id);
      this.linkDependencies(t, stored);
      if (t.unmet > 0) this.record(t, 'waiting');
      else this.markReady(t);
      this.timeouts.track(t);
      this.stats.retried++;
      revived.push(t.id);
    }
    this.scheduleDistribute();
    this.scheduleFlush();
    return { revived, refused };
  }

  // ---- the queue -----------------------------------------------------------------------------------

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

  // ---- why not ------------------------------------------------------------------------------------

  /**
   * Why task `taskId` does not run (yet), or not on runner `runnerId`: the first reason the policies
   * give, asked in the order `distribute` applies them. Slow (it walks the runners); never on the
   * hot path.
   */
  explain(taskId: string, runnerId?: string): Reason {
    const t = this.tasks.get(taskId);
    if (!t) {
      const fin = this.finals.get(taskId);
      return fin
        ? reason('FINAL', `task ${taskId} is ${fin.state}`)
        : reason('UNKNOWN_TASK', `task ${taskId} is not in memory (final, purged, or never added)`);
    }
    if (t.state === 'assigned' || t.state === 'running')
      return reason('ASSIGNED', `${t.state} on runner ${t.who} (attempt ${t.attempts})`);
    if (t.state === 'waiting') {
      const open = t.dependencies.filter((d) => this.tasks.has(d));
      const named = open
        .slice(0, 5)
        .map((d) => `${d} (${this.tasks.get(d)?.state})`)
        .join(', ');
      return open.length > 0
        ? reason(
            'DEPENDENCY',
            `waiting for ${open.length === 1 ? 'dependency' : 'dependencies'} ${named}${open.length > 5 ? ', …' : ''} not done`,
          )
        : reason('DEPENDENCY', 'waiting');
    }
    if (isFinal(t.state)) return reason('FINAL', `task ${taskId} is ${t.state}`);
    const now = Date.now();
    const blocked = this.parking.explain(t) ?? this.retries.explain(t, now);
    if (blocked) return blocked;
    if (this.store.folder.congested)
      return reason('STORE_BEHIND', 'the database is behind: new work waits until it catches up');
    if (runnerId !== undefined) {
      const r = this.runners.get(runnerId);
      if (!r) return reason('UNKNOWN_RUNNER', `no runner ${runnerId}`);
      return (
        this.explainFor(t, r) ??
        reason('QUEUED', `queued at priority ${t.priority}; runner ${r.id} can take it`)
      );
    }
    if (t.runner && !this.runners.get(t.runner)?.connected)
      return reason('NO_RUNNER', `pinned to runner ${t.runner}, which is not connected`);
    // The runner that gets furthest down the chain says the most.
    let best: Reason | null = null;
    let rank = -1;
    let any = false;
    for (const r of this.runners.values()) {
      any = true;
      const why = this.explainFor(t, r);
      if (!why) return reason('QUEUED', `queued at priority ${t.priority}; runner ${r.id} can take it`);
      const k = CHAIN.indexOf(why.code);
      if (k > rank) [best, rank] = [why, k];
    }
    if (!any) return reason('NO_RUNNER', 'no runner is connected');
    return best as Reason;
  }

  /** Why `r` does not take `t` now; null if it would. */
  private explainFor(t: TaskRecord, r: RunnerEntry): Reason | null {
    return (
      explainRunnerState(r) ??
      explainEligibility(r, t) ??
      this.affinity.explain(t, r, this.runners) ??
      explainCapacity(r, t.priority)
    );
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
      if (s && isFinal(s.state)) outcomes.push(outcomeOf(s));
      else unknown.push(id);
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
    this.retries.close();
    this.timeouts.close();
    await this.store.barrier();
  }
}

/** The per-runner part of the chain, in order: a later code means the runner got further. */
const CHAIN: readonly ReasonCode[] = [
  'DISCONNECTED',
  'DRAINING',
  'NOT_ELIGIBLE',
  'AFFINITY',
  'PRIORITY_SLOTS',
  'NO_FREE_SLOT',
];

function depError(dep: string, err: WireError | null | undefined): WireError {
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

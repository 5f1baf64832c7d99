/**
 * The scheduler's core: the tasks in memory, the ready queue, distribution and the flush after each
 * durable write. Whether a task may go now is the policy list's answer (master/scheduler/policy.ts,
 * in the order of policies/default-policies.ts), which `distribute` and `explain` both walk; the
 * policies' state (parking, affinity) lives here, and every wait for a time is on one heap of
 * wake-ups (master/scheduler/wakeups.ts). The transitions of a task are in transitions.ts, the entry
 * points (adds, runners' reports, recovery, an operator's requests) in scheduler.ts.
 *
 * Fencing: every assignment carries its attempt number; a report for any other attempt than the
 * task's current one is stale and ignored (`holdsAttempt`), so a late runner never overwrites a newer
 * attempt. Durability before effect: assignments are sent and outcomes delivered only after the
 * store's barrier, i.e. once the change is in the database.
 */
import { EventEmitter } from 'node:events';
import type { ReportedError, WireError } from '../../protocol/errors';
import type { Assignment, TaskOutcome } from '../../protocol/schemas';
import type { TaskState } from '../../protocol/states';
import { Affinity } from './policies/affinity';
import { DEFAULT_MAX_DEPENDENCY_BYTES, DependencyResults } from './dependency-results';
import { DEFAULT_POLICIES } from './policies/default-policies';
import { delayedUntil } from './policies/delayed';
import { explainMissingModule } from './policies/eligibility';
import { LimitBook } from './limit-rules';
import { Limits } from './policies/limits';
import { Parking } from './policies/parking';
import { RetryPolicy } from './policies/retry';
import { selectMostAvailable, type RunnerSelector } from './policies/selection';
import { Timeouts } from './policies/timeouts';
import { Pipeline, type Policy, type PolicyContext, type TaskPolicy } from './policy';
import { SCHEDULER_OPTIONS } from './options';
import { ReadyQueue } from './ready-queue';
import { freeSlots, RunnerRegistry, type RunnerEntry } from './runner-registry';
import type { SchedulerOptions } from './scheduler-options';
import { Wakeups } from './wakeups';
import type { TaskRecord } from '../task-record';
import type { TaskStore } from '../task-store';

export type { SchedulerOptions } from './scheduler-options';

interface QueueEntry {
  priority: number;
  seq: number;
  group: string | null;
  task: TaskRecord;
}

/** A wake-up: a held task queued again at `at`, a policy's own call (`run`), or the timeout sweep. */
interface Wake {
  at: number;
  entry: QueueEntry | null;
  run?: () => void;
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
  error?: ReportedError | null;
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

export abstract class SchedulerCore extends EventEmitter<SchedulerEvents> {
  readonly tasks = new Map<string, TaskRecord>();
  readonly finals = new Map<string, TaskOutcome>();
  /** Bytes of the tasks in `tasks` (`taskBytes`), which `queueLimitBytes` bounds. */
  protected heldBytes = 0;
  readonly runners = new RunnerRegistry();
  /** Ready tasks: priority, then the groups' fair shares (`groupWeights`), then FIFO. */
  protected readonly ready: ReadyQueue<QueueEntry>;
  protected seq = 0;
  protected distributeScheduled = false;
  /** Assignments made since the last flush, sent once they are durable. */
  protected unsent = new Map<RunnerEntry, Assignment[]>();
  /**
   * The record each unsent assignment was made for: the flush sends it only if that very record
   * still holds the attempt (an id added again after its add was refused is another record).
   */
  protected readonly assignedRecord = new WeakMap<Assignment, TaskRecord>();
  /** Assignments made ahead of their rate limit's opening: not sent before this time (policies/limits.ts). */
  protected readonly sendAt = new WeakMap<Assignment, number>();
  /** Outcomes made final since the last flush, delivered once they are durable. */
  protected undelivered: TaskOutcome[] = [];
  protected flushScheduled = false;
  /** Recovered attempts waiting for their runner to come back and keep them. */
  protected orphans = new Set<TaskRecord>();
  /** Modules no connected runner can run, with what the log said about each (`moduleMissing`). */
  protected readonly unrunnable = new Map<string, string>();
  /**
   * Ready tasks whose module no connected runner can run, out of the queue so that every pass does not
   * walk them all again; queued again once a runner joins or announces modules (`runners.generation`).
   */
  private moduleWait: QueueEntry[] = [];
  private moduleWaitSince = 0;
  protected readonly parking: Parking;
  /** Dependencies' results for the assignments of dependents. */
  protected readonly dependencyResults: DependencyResults;
  protected readonly affinity: Affinity;
  /** Rate limits and concurrency caps: `limits.any` is false while none is set. */
  readonly limits: Limits;
  /** Where each selector's limit comes from: the options, and what `limits` stores. */
  readonly limitBook: LimitBook;
  protected readonly retries: RetryPolicy;
  protected readonly timeouts: Timeouts;
  protected readonly select: RunnerSelector;
  /** The policy list, in the order `distribute` and `explain` ask it. */
  protected readonly pipeline: Pipeline;
  /** What the policies read (master/scheduler/policy.ts). */
  protected readonly ctx: PolicyContext;
  /** Every wait for a time: held tasks (backoff, any policy's `wakeAt`) and the timeout sweep. */
  protected readonly wakeups = new Wakeups<Wake>((w) => this.woke(w));
  // Reused by every pass, so that a pass allocates nothing per task.
  private readonly candidates: RunnerEntry[] = [];
  private readonly able: RunnerEntry[] = [];
  protected closed = false;
  /** Counters for status and benchmarks (`held`: tasks parked behind a leader with their key). */
  readonly stats = { added: 0, assigned: 0, done: 0, failed: 0, retried: 0, stale: 0, held: 0, cancelled: 0 };
  readonly observers: TaskObserver[] = [];

  /** `policies`: the list `distribute` and `explain` walk (default `DEFAULT_POLICIES`). */
  constructor(
    protected readonly store: TaskStore,
    protected readonly opts: SchedulerOptions,
    policies: readonly Policy[] = DEFAULT_POLICIES,
  ) {
    super();
    this.parking = new Parking(opts.holdSimilarWork);
    this.affinity = new Affinity(store, opts.allocate);
    this.retries = new RetryPolicy(opts.retryBackoff);
    this.timeouts = new Timeouts(opts.timeoutSweepMs, {
      expired: (t, error) => this.timedOut(t, error),
      runExpired: (t) => this.runTimedOut(t),
      swept: () => {
        this.scheduleDistribute();
        this.scheduleFlush();
      },
      sweepAt: (at) => this.wakeups.push({ at, entry: null }),
    });
    // Checked here too: options given through the API skip the command line's parsing.
    const weights = new Map(Object.entries(SCHEDULER_OPTIONS.groupWeights.schema.parse(opts.groupWeights)));
    this.ready = new ReadyQueue((group) => (group === null ? 1 : (weights.get(group) ?? 1)));
    this.pipeline = new Pipeline(policies);
    this.limits = new Limits(this.tasks, {
      requeue: (t, seq) => this.requeueInPlace(t, seq),
      wakeAt: (at, run) => this.wakeups.push({ at, entry: null, run }),
    });
    this.limitBook = new LimitBook(opts.limits ?? []);
    this.limits.configure(this.limitBook.entries());
    this.ctx = {
      runners: this.runners,
      parking: this.parking,
      affinity: this.affinity,
      limits: this.limits,
      folder: store.folder,
      opts,
    };
    this.select = opts.selectRunner ?? selectMostAvailable;
    this.dependencyResults = new DependencyResults(
      this.finals,
      store,
      opts.maxDependencyBytes ?? DEFAULT_MAX_DEPENDENCY_BYTES,
      opts.logger,
    );
    store.onRefused = (t, error) => this.stateRefused(t, error);
    store.folder.onRelieved = () => this.scheduleDistribute();
    store.beforeWrite = this.distributeBeforeWrite;
  }

  // ---- distributing ----------------------------------------------------------------------------

  scheduleDistribute(): void {
    if (this.distributeScheduled || this.closed) return;
    this.distributeScheduled = true;
    if (this.opts.distributeDelayMs > 0) setTimeout(this.runDistribute, this.opts.distributeDelayMs).unref();
    else setImmediate(this.runDistribute);
  }

  /** The pass scheduleDistribute asked for, unless the store's next write ran it already. */
  private readonly runDistribute = (): void => {
    if (!this.distributeScheduled) return;
    this.distributeScheduled = false;
    this.distribute();
  };

  /**
   * The store is about to write what is queued (TaskStore.beforeWrite): a pass due on this tick runs
   * first, so its assignments share that write with the add or the result that made them possible.
   * The store's write and the pass are both set for the next turn of the event loop, the write
   * usually first; without this, an add's assignment waited for the write after its add's.
   */
  private readonly distributeBeforeWrite = (): void => {
    if (this.opts.distributeDelayMs === 0) this.runDistribute();
  };

  /**
   * Hands ready tasks to runners, highest priority first, asking the policy list (`pipeline`): its
   * pass policies once, its task policies once per task, its runner policies per task and runner
   * with a free slot; the selector picks among the runners left. A task a task policy holds leaves
   * the queue until its wake-up time, or until the policy hands it back (`hold`).
   */
  protected distribute(): void {
    const { pipeline, ctx } = this;
    // e.g. `tasks` too far behind: the folder calls back once it catches up.
    if (pipeline.passHeld(ctx)) return;
    if (this.moduleWait.length > 0 && this.runners.generation !== this.moduleWaitSince) {
      for (const e of this.moduleWait) this.ready.push(e);
      this.moduleWait = [];
    }
    const candidates = this.candidates;
    const able = this.able;
    candidates.length = 0;
    for (const r of this.runners.values()) if (freeSlots(r) > 0) candidates.push(r);
    const skipped: QueueEntry[] = [];
    const checked = new Map<string, boolean>();
    const now = Date.now();
    const all = pipeline.runner.length;
    while (candidates.length > 0 && this.ready.size > 0) {
      const e = this.ready.pop() as QueueEntry;
      const t = e.task;
      if (t.state !== 'ready' || t.seq !== e.seq) continue; // left the queue meanwhile
      const held = pipeline.taskHeld(ctx, t, now);
      if (held) {
        if (!this.hold(held, e, now)) skipped.push(e);
        continue;
      }
      pipeline.prepare(ctx, t);
      able.length = 0;
      for (const c of candidates) if (pipeline.stopsAt(ctx, t, c) === all) able.push(c);
      const r = able.length > 0 ? this.select(t, able) : undefined;
      if (!r || !able.includes(r)) {
        if (able.length === 0 && this.moduleMissing(t.module, checked)) {
          this.moduleWait.push(e);
          this.moduleWaitSince = this.runners.generation;
        } else skipped.push(e);
        continue;
      }
      if (this.unrunnable.size > 0) this.unrunnable.delete(t.module);
      this.assign(t, r);
      this.ready.charge(e);
      if (freeSlots(r) <= 0) candidates.splice(candidates.indexOf(r), 1);
    }
    able.length = 0;
    for (const e of skipped) this.ready.push(e);
    this.scheduleFlush();
  }

  /**
   * Task policy `p` holds the queued task of `e`: until its wake-up time (on the heap), or until the
   * policy hands it back (parked behind its key's leader). False: it stays queued.
   */
  private hold(p: TaskPolicy, e: QueueEntry, now: number): boolean {
    if (p.hold) {
      p.hold(this.ctx, e.task);
      this.stats.held++;
      return true;
    }
    const at = p.wakeAt?.(this.ctx, e.task, now);
    if (at === undefined || at <= now) return false;
    this.wakeups.push({ at, entry: e });
    return true;
  }

  /** A wake-up is due: the held task is queued again (unless it moved on), or timeouts are swept. */
  private woke(w: Wake): void {
    if (w.run) return w.run();
    if (!w.entry) return this.timeouts.sweep(Date.now());
    const t = w.entry.task;
    if (t.state === 'ready' && t.seq === w.entry.seq && this.tasks.get(t.id) === t) this.enqueue(t);
  }

  /**
   * Whether no connected runner can run `module` (a task no runner with a free slot could take asks).
   * If so, the log says it once (a mistyped name, a runner not started yet, a module that fails to
   * load everywhere), until a task of that module is assigned again. Checked once per module and pass.
   */
  private moduleMissing(module: string, checked: Map<string, boolean>): boolean {
    const known = checked.get(module);
    if (known !== undefined) return known;
    const why = explainMissingModule(module, this.runners);
    checked.set(module, why !== null);
    if (why && this.unrunnable.get(module) !== why.message) {
      this.unrunnable.set(module, why.message);
      this.opts.logger.warn(`tasks wait: ${why.message}`, { module });
    }
    return why !== null;
  }

  /** After the changes of this tick are durable: send assignments, deliver outcomes. */
  protected scheduleFlush(): void {
    if (this.flushScheduled) return;
    if (this.unsent.size === 0 && this.undelivered.length === 0) return;
    this.flushScheduled = true;
    const assign = this.unsent;
    const outcomes = this.undelivered;
    this.unsent = new Map();
    this.undelivered = [];
    void this.store.barrier().then(async () => {
      await this.dependencyResults.read(assign.values());
      this.flushScheduled = false;
      for (const [r, list] of assign) this.send(r, list);
      if (outcomes.length > 0) this.emit('outcomes', outcomes);
      this.scheduleFlush();
    });
  }

  /**
   * Sends durable assignments to `r`: those still held by it (the runner may have gone, or a task
   * been cancelled, while the write was in flight); one assigned ahead of its limit's opening waits
   * for it (`sendAt`).
   */
  private send(r: RunnerEntry, list: Assignment[]): void {
    const still = list.filter((a) => {
      const t = this.tasks.get(a.id);
      return (
        t !== undefined &&
        t === this.assignedRecord.get(a) &&
        t.state === 'assigned' &&
        holdsAttempt(t, a.attempt, r.id)
      );
    });
    let now = still;
    if (this.limits.any) {
      const at = Date.now();
      const later = still.filter((a) => (this.sendAt.get(a) ?? 0) > at);
      if (later.length > 0) {
        now = still.filter((a) => !later.includes(a));
        const next = Math.min(...later.map((a) => this.sendAt.get(a) ?? 0));
        setTimeout(() => this.closed || this.send(r, later), Math.max(0, next - Date.now())).unref();
      }
    }
    for (const part of this.dependencyResults.bySize(now)) this.runners.send(r, part);
  }

  // ---- what the transitions (master/scheduler/transitions.ts) provide ---------------------------

  /** Hands `t` to `r`, chosen by `distribute`: a new attempt. */
  protected abstract assign(t: TaskRecord, r: RunnerEntry): void;
  /** A task's timeout expired (master/scheduler/policies/timeouts.ts). */
  protected abstract timedOut(t: TaskRecord, error: WireError): void;
  /** An attempt's run deadline passed with no result from its runner. */
  protected abstract runTimedOut(t: TaskRecord): void;
  /** The server refused a task's new state when it was written. */
  protected abstract stateRefused(t: TaskRecord, error: WireError): void;

  // ---- the queue and the slots -------------------------------------------------------------------

  protected enqueue(t: TaskRecord): void {
    t.seq = ++this.seq;
    t.readyAt = Date.now();
    const e = { priority: t.priority, seq: t.seq, group: t.group ?? null, task: t };
    // A delayed task waits on the heap, not in the queue: thousands of them cost a pass nothing. The
    // `delayed` policy still refuses it on any pass before its time.
    const at = delayedUntil(t, t.readyAt);
    if (at > 0) return this.wakeups.push({ at, entry: e });
    this.ready.push(e);
    this.scheduleDistribute();
  }

  /**
   * A ready task a policy held out of the queue goes back to its place: its own sequence number, so
   * it is still ahead of the tasks of its priority queued after it. Not if it moved on meanwhile.
   */
  protected requeueInPlace(t: TaskRecord, seq: number): void {
    if (t.state !== 'ready' || t.seq !== seq || this.tasks.get(t.id) !== t) return;
    this.ready.push({ priority: t.priority, seq, group: t.group ?? null, task: t });
    this.scheduleDistribute();
  }

  protected releaseSlotOf(t: TaskRecord): void {
    if (this.limits.any) this.limits.ended(t);
    const r = t.who ? this.runners.get(t.who) : undefined;
    if (r) this.runners.releaseSlot(r, t.id, t.priority);
    this.orphans.delete(t);
  }
}

export { depError } from '../../protocol/errors';

/**
 * The scheduling pipeline: one ordered list of policies that `distribute` (master/scheduler/core.ts)
 * and `explain` (master/scheduler/scheduler.ts) both walk, so the reason `explain` gives is the one
 * that holds the task in `distribute`, by construction. Each policy decides once (`check` returns a
 * reason code or null) and words its reason once (`describe`, called only by `explain`).
 *
 * A policy gates at one of three scopes, and the pipeline asks them scope by scope, in list order
 * within a scope: `pass` policies once per distribution pass (may anything go now?), `task` policies
 * once per task per pass (may this task go now, on any runner?), `runner` policies once per task and
 * runner (may it go to this one?). A policy listed out of scope order is asked at its scope all the
 * same: the order below (`Pipeline.ordered`) is the one both walks use.
 *
 * When to look again: a refused task policy gives a time (`wakeAt`: the task leaves the queue and the
 * core's one heap of wake-ups puts it back then), or keeps the task itself until an event hands it
 * back (`hold`: parking), or neither (the task stays queued for the next pass). Pass and runner
 * policies are looked at again on the next pass, which the events that can change their answer
 * trigger (the store catching up, a runner joining, a slot freed).
 *
 * Hot path: `check` must not allocate; `describe` may (only `explain` calls it).
 */
import type { RunnerEntry, RunnerRegistry } from './runner-registry';
import type { SchedulerOptions } from './scheduler-options';
import { reason, type Reason, type ReasonCode } from './policies/reason';
import type { TaskRecord } from '../task-record';

/**
 * What a policy may read: the scheduler's state, to change only in `hold` and `prepare`. The state
 * the core shares with policies is seen through these views (the classes are in master/scheduler/
 * policies/), so that this file imports none of the policies.
 */
export interface PolicyContext {
  readonly runners: RunnerRegistry;
  /** Hold-similar-work's leaders (policies/parking.ts). */
  readonly parking: {
    leaderOf(t: TaskRecord): TaskRecord | undefined;
    park(t: TaskRecord, leader: TaskRecord): void;
  };
  /** Affinity keys' runners (policies/affinity.ts). */
  readonly affinity: {
    /** The key's runner, allocated now if it has none (null: no runner can take it now). */
    runnerFor(t: TaskRecord, runners: RunnerRegistry): string | null;
    /** The key's runner, or the one it would be allocated to now; allocates nothing. */
    ownerOf(t: TaskRecord, runners: RunnerRegistry): string | undefined;
    /** Whether the key has a runner already. */
    holds(key: string): boolean;
  };
  /** Rate limits and concurrency caps (policies/limits.ts). */
  readonly limits: {
    /** Whether any limit is set: nothing else is asked when not. */
    readonly any: boolean;
    /** The first gate that keeps `t` now, or null. */
    closed(t: TaskRecord, now: number): LimitGateView | null;
    /** `t` met a closed gate: it waits in that gate's line. */
    hold(t: TaskRecord, now: number): void;
    /** When a task kept by `g` may go (null: when a running task ends). */
    mayGoAt(g: LimitGateView, now: number): number | null;
  };
  /** The store's journal folder: `congested` while it is too far behind. */
  readonly folder: { readonly congested: boolean };
  readonly opts: SchedulerOptions;
}

/** One selector's gate, as the limits policy words it. */
export interface LimitGateView {
  readonly label: string;
  readonly spec: string;
  readonly pausedUntil: number;
  readonly line: { readonly size: number };
  room(now: number): number;
}

interface PolicyBase {
  /** Kebab-case, for docs and logs. */
  readonly name: string;
}

/** Gates a whole distribution pass. */
export interface PassPolicy extends PolicyBase {
  readonly scope: 'pass';
  check(ctx: PolicyContext): ReasonCode | null;
  describe(ctx: PolicyContext, code: ReasonCode): string;
}

/** Gates one task, whatever the runner; asked once per task per pass. */
export interface TaskPolicy extends PolicyBase {
  readonly scope: 'task';
  check(ctx: PolicyContext, t: TaskRecord, now: number): ReasonCode | null;
  describe(ctx: PolicyContext, code: ReasonCode, t: TaskRecord, now: number): string;
  /** Refused in a pass: when (epoch ms) the task is queued again. */
  wakeAt?(ctx: PolicyContext, t: TaskRecord, now: number): number;
  /** Refused in a pass: the policy keeps the task out of the queue until an event hands it back. */
  hold?(ctx: PolicyContext, t: TaskRecord): void;
  /** For `explain`: when (epoch ms) the task may go, if the policy knows (null: it does not). */
  until?(ctx: PolicyContext, t: TaskRecord, now: number): number | null;
}

/** Gates one task on one runner; asked per runner with a free slot, per task per pass. */
export interface RunnerPolicy extends PolicyBase {
  readonly scope: 'runner';
  /** Once per task per pass, before the runners are asked (never by `explain`): e.g. allocate a key. */
  prepare?(ctx: PolicyContext, t: TaskRecord): void;
  check(ctx: PolicyContext, t: TaskRecord, r: RunnerEntry): ReasonCode | null;
  describe(ctx: PolicyContext, code: ReasonCode, t: TaskRecord, r: RunnerEntry): string;
  /** The sentence when no runner gets past this policy, if it says more than one runner's does. */
  describeAll?(ctx: PolicyContext, code: ReasonCode, t: TaskRecord): string | null;
}

export type Policy = PassPolicy | TaskPolicy | RunnerPolicy;

const SCOPES = ['pass', 'task', 'runner'] as const;

type RunnerCheck = (ctx: PolicyContext, t: TaskRecord, r: RunnerEntry) => ReasonCode | null;

export class Pipeline {
  readonly pass: readonly PassPolicy[];
  readonly task: readonly TaskPolicy[];
  readonly runner: readonly RunnerPolicy[];
  /** Every policy in the order both walks ask them. */
  readonly ordered: readonly Policy[];
  // The per-runner checks, bound once: the innermost loop of a pass calls them.
  private readonly runnerChecks: readonly RunnerCheck[];
  private readonly preparers: readonly RunnerPolicy[];

  constructor(policies: readonly Policy[]) {
    const names = new Set<string>();
    for (const p of policies) {
      if (names.has(p.name)) throw new Error(`scheduling policy "${p.name}" is listed twice`);
      names.add(p.name);
    }
    this.pass = policies.filter((p): p is PassPolicy => p.scope === 'pass');
    this.task = policies.filter((p): p is TaskPolicy => p.scope === 'task');
    this.runner = policies.filter((p): p is RunnerPolicy => p.scope === 'runner');
    this.ordered = SCOPES.flatMap((s) => policies.filter((p) => p.scope === s));
    this.runnerChecks = this.runner.map((p) => p.check.bind(p));
    this.preparers = this.runner.filter((p) => p.prepare !== undefined);
  }

  /** The pass policy that holds every task now, if any. */
  passHeld(ctx: PolicyContext): PassPolicy | null {
    for (const p of this.pass) if (p.check(ctx) !== null) return p;
    return null;
  }

  /** The task policy that holds `t` now, if any. */
  taskHeld(ctx: PolicyContext, t: TaskRecord, now: number): TaskPolicy | null {
    for (const p of this.task) if (p.check(ctx, t, now) !== null) return p;
    return null;
  }

  /** Before asking the runners about `t` in a pass. */
  prepare(ctx: PolicyContext, t: TaskRecord): void {
    for (const p of this.preparers) p.prepare?.(ctx, t);
  }

  /** The index of the first runner policy that keeps `t` from `r`; `runner.length` if none does. */
  stopsAt(ctx: PolicyContext, t: TaskRecord, r: RunnerEntry): number {
    const checks = this.runnerChecks;
    for (let i = 0; i < checks.length; i++) if (checks[i](ctx, t, r) !== null) return i;
    return checks.length;
  }

  /**
   * Why ready task `t` does not run now, on runner `r` or on any: the first policy that holds it, in
   * the order `distribute` asks them. Across runners, the runner that gets furthest down the list
   * gives the reason. Slow (it walks the runners and builds sentences); never on the hot path.
   */
  explain(ctx: PolicyContext, t: TaskRecord, now: number, r?: RunnerEntry): Reason {
    for (const p of this.pass) {
      const code = p.check(ctx);
      if (code !== null) return reason(code, p.describe(ctx, code));
    }
    for (const p of this.task) {
      const code = p.check(ctx, t, now);
      if (code === null) continue;
      const why = reason(code, p.describe(ctx, code, t, now));
      const until = p.until?.(ctx, t, now);
      if (until != null) why.until = new Date(until).toISOString();
      return why;
    }
    if (r) return this.onRunner(ctx, t, r, this.stopsAt(ctx, t, r)) ?? queued(t, r);
    let best: RunnerEntry | null = null;
    let rank = -1;
    for (const x of ctx.runners.values()) {
      const k = this.stopsAt(ctx, t, x);
      if (k === this.runner.length) return queued(t, x);
      if (k > rank) [best, rank] = [x, k];
    }
    if (!best) return reason('NO_RUNNER', 'no runner is connected');
    const p = this.runner[rank];
    const code = p.check(ctx, t, best) as ReasonCode;
    return reason(code, p.describeAll?.(ctx, code, t) ?? p.describe(ctx, code, t, best));
  }

  private onRunner(ctx: PolicyContext, t: TaskRecord, r: RunnerEntry, k: number): Reason | null {
    if (k === this.runner.length) return null;
    const p = this.runner[k];
    const code = p.check(ctx, t, r) as ReasonCode;
    return reason(code, p.describe(ctx, code, t, r));
  }
}

function queued(t: TaskRecord, r: RunnerEntry): Reason {
  return reason('QUEUED', `queued at priority ${t.priority}; runner ${r.id} can take it`);
}

/**
 * A scheduler on the in-memory store, runners that record what they are sent, and waits for the
 * scheduler's deferred passes (distribution and flush run on the next tick).
 */
import { silentLogger } from '../../../common/logger';
import { defaultsOf } from '../../../common/settings';
import { SCHEDULER_OPTIONS } from '../../../master/scheduler/options';
import type { AttemptRef } from '../../../protocol/events';
import type { Assignment, TaskOutcome } from '../../../protocol/schemas';
import type { Policy } from '../../../master/scheduler/policy';
import { slotPlan, type RunnerEntry } from '../../../master/scheduler/runner-registry';
import { Scheduler, type SchedulerOptions } from '../../../master/scheduler/scheduler';
import { FakeTaskStore } from './fake-store';

export interface TestRunner extends RunnerEntry {
  sent: Assignment[];
  /** Each message of assignments as it was sent. */
  messages: Assignment[][];
  cancelled: AttemptRef[];
}

export function makeRunner(
  id: string,
  opts: {
    slots?: number;
    data?: Record<string, unknown>;
    prioritySlots?: Record<string, number>;
    legacy?: boolean;
    /** Modules it announces (`name` or `name@hash`); absent: it announces none and takes any module. */
    modules?: string[];
  } = {},
): TestRunner {
  const modules = opts.modules?.map((m) => {
    const [name, hash = 'h1'] = m.split('@');
    return { name, hash };
  });
  const slots = opts.slots ?? 1;
  const r: TestRunner = {
    id,
    slots,
    workers: slots,
    data: opts.data ?? {},
    modules: modules ?? [],
    ...(modules ? { moduleIndex: new Map(modules.map((m) => [m.name, m.hash])) } : {}),
    active: new Set(),
    prioritySlots: opts.prioritySlots,
    ...slotPlan(slots, opts.prioritySlots, false),
    connected: true,
    legacy: opts.legacy === true,
    conn: `conn-${id}`,
    since: 0,
    lostTimer: null,
    sent: [],
    messages: [],
    cancelled: [],
    link: {
      assign: (tasks) => {
        r.messages.push(tasks);
        r.sent.push(...tasks);
      },
      cancel: (tasks) => r.cancelled.push(...tasks),
    },
  };
  return r;
}

/** `policies`: the list distribute and explain walk (default: the master's). */
export function makeScheduler(
  opts: Partial<SchedulerOptions> = {},
  policies?: readonly Policy[],
): {
  sched: Scheduler;
  store: FakeTaskStore;
  outcomes: TaskOutcome[];
} {
  const store = new FakeTaskStore();
  const sched = new Scheduler(
    store,
    {
      // The master's declared defaults, then what these tests expect of a scheduler.
      ...defaultsOf(SCHEDULER_OPTIONS),
      maxAttempts: 1,
      recoveryGraceMs: 60_000,
      disconnectGraceMs: 60_000,
      finalCacheSize: 1000,
      queueLimit: 10_000,
      queueLimitBytes: 1024 * 1024 * 1024,
      holdSimilarWork: false,
      retryBackoff: { type: 'fixed', delay: 0 },
      timeoutSweepMs: 10,
      distributeDelayMs: 0,
      logger: silentLogger(),
      ...opts,
    },
    policies,
  );
  const outcomes: TaskOutcome[] = [];
  sched.on('outcomes', (os) => outcomes.push(...os));
  return { sched, store, outcomes };
}

/** Lets the scheduler's deferred distribution and flush run (a few turns of the event loop). */
export async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

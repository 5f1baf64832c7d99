/**
 * The scheduler's options, declared beside the policies that read them: each declaration gives the
 * `MasterOptions` field, its flag, its default and its line in `--help` and docs/configuration.md
 * (master/options.ts gathers them). The master hands the scheduler exactly these (`schedulerOptions`).
 */
import { z } from 'zod';
import { duration, integer, option } from '../../common/settings';
import { MAX_TIMER_MS } from '../../protocol/schemas';
import type { Backoff, TaskRecord } from '../task-record';
import { DEFAULT_MAX_DEPENDENCY_BYTES } from './dependency-results';
import { limitRules } from './limit-spec';
import type { RunnerEntry } from './runner-registry';

/** Chooses the runner for a new affinity key among the available ones (sorted ids). */
export type Allocator = (key: string, runnerIds: string[]) => string | undefined;

/** Largest group weight: the ratio of two groups' shares stays one a queue can honour. */
export const MAX_GROUP_WEIGHT = 1_000_000;

/**
 * `--group-weight NAME=W`, repeated (or the record itself, from the API): group name to weight, a
 * number above 0 and at most MAX_GROUP_WEIGHT.
 */
function groupWeights(): z.ZodType<Record<string, number>> {
  const given = z.union([z.array(z.string()), z.record(z.string(), z.number())], {
    error: 'must be NAME=WEIGHT pairs, e.g. big=3',
  });
  return given.transform((value, ctx) => {
    const out: Record<string, number> = {};
    const entries = Array.isArray(value)
      ? value.map((pair, i) => {
          const m = /^([^=]*)=(.*)$/.exec(pair);
          return [i, m?.[1].trim() ?? '', m ? Number(m[2] === '' ? NaN : m[2]) : NaN] as const;
        })
      : Object.entries(value).map(([name, w]) => [name, name, w] as const);
    for (const [at, name, w] of entries) {
      if (name === '')
        ctx.addIssue({ code: 'custom', path: [at], message: 'must be NAME=WEIGHT, e.g. big=3' });
      else if (!(w > 0 && w <= MAX_GROUP_WEIGHT))
        ctx.addIssue({
          code: 'custom',
          path: [at],
          message: `weight of group "${name}" must be a number above 0 and at most ${MAX_GROUP_WEIGHT}`,
        });
      else out[name] = w;
    }
    return out;
  });
}

export const SCHEDULER_OPTIONS = {
  /** Attempts per task unless the task says otherwise. */
  maxAttempts: option(integer(1, 1000), {
    flag: '--max-attempts',
    arg: '<n>',
    default: 3,
    group: 'scheduling',
    doc: 'attempts per task unless the task says otherwise',
  }),
  /**
   * The `runTimeout` (ms) of an attempt whose task sets none, applied when it is assigned: it fails
   * with ETO (and is retried) after this long. Unset, such a task may run forever.
   */
  defaultRunTimeout: option(
    duration().pipe(
      z.number().min(1, 'must be at least 1 ms').max(MAX_TIMER_MS, `must be at most ${MAX_TIMER_MS} ms`),
    ),
    {
      flag: '--default-run-timeout',
      arg: '<ms>',
      defaultText: 'none: they may run forever',
      group: 'scheduling',
      doc: '`runTimeout` of tasks that set none (ms, or `30m`, `2h`)',
    },
  ),
  /**
   * The master's own run timeout: an attempt with a run timeout whose runner reports nothing for that
   * long plus this grace after it was assigned fails with ETO, exactly as if the runner had reported
   * it (counted, retried by the policy), and the runner is told to cancel it. Covers a runner that
   * is connected but wedged.
   */
  runTimeoutGraceMs: option(integer(0, 3_600_000), {
    flag: '--run-timeout-grace',
    arg: '<ms>',
    default: 30_000,
    group: 'scheduling',
    doc: 'an attempt whose runner reports nothing this long past its run timeout fails with `ETO`, taken back by the master',
  }),
  /**
   * How long the master waits after a change (a new task, a free slot) before it distributes, to
   * gather more changes into one pass (proletariat's DISTRIB_RANDMAX played this role). 0: on the
   * next tick, which already batches everything that happened in the current one.
   */
  distributeDelayMs: option(integer(0, 60_000), {
    flag: '--distribute-delay',
    arg: '<ms>',
    default: 0,
    group: 'scheduling',
    doc: 'wait after a change before distributing, to batch more; 0: the next tick',
  }),
  /**
   * Keep priority guarantees strictly: work above its range's guarantee only takes slots from the
   * lowest range (proletariat's SACRED_GUARANTEES).
   */
  sacredGuarantees: option(z.boolean(), {
    flag: '--sacred-guarantees',
    default: false,
    group: 'scheduling',
    doc: 'keep priority slot guarantees strictly',
  }),
  /** Run one task per `key` at a time; tasks with the key of a running task are held and get its outcome (proletariat's HOLDSIMILARWORK). */
  holdSimilarWork: option(z.boolean(), {
    flag: '--hold-similar-work',
    default: false,
    group: 'scheduling',
    doc: 'one task per `key` at a time; the others get its outcome',
  }),
  /**
   * Weights of fair-share groups (task field `group`): within one priority, ready tasks are taken
   * round-robin across groups, each group in proportion to its weight (`{ big: 3 }`: three starts of
   * `big` for one of a group of weight 1 while both have tasks waiting). Groups not named, and tasks
   * without a group (the default group), weigh 1.
   */
  groupWeights: option(groupWeights(), {
    flag: '--group-weight',
    arg: '<name=w>',
    repeatable: true,
    default: {},
    defaultText: 'every group 1',
    group: 'scheduling',
    doc: 'weight of a fair-share group within a priority (`--group-weight big=3`); repeatable',
  }),
  /** Delay before a retry, unless a task sets `backoff`. */
  retryBackoff: option(z.custom<Backoff>(), {
    default: { type: 'exponential', delay: 0 },
    defaultText: 'none: retry at once',
    group: 'scheduling',
    doc: 'delay before a retry unless a task sets `backoff`: `{ type: "fixed" | "exponential", delay, maxDelay?, jitter? }`',
  }),
  /** How often global and assign timeouts are checked, in ms. */
  timeoutSweepMs: option(z.number(), {
    default: 50,
    group: 'scheduling',
    doc: 'how often global and assign timeouts are checked, in ms',
  }),
  /**
   * Chooses the runner for a task among those that can take it now (proletariat's workSelectWorker).
   * Unset: the runner with the most free slots.
   */
  selectRunner: option(z.custom<(task: TaskRecord, runners: RunnerEntry[]) => RunnerEntry | undefined>(), {
    defaultText: 'the runner with the most free slots',
    group: 'scheduling',
    doc: 'chooses the runner for a task among those that can take it now',
  }),
  /**
   * Chooses the runner a new affinity key is allocated to, among the available runner ids (sorted);
   * atributo's `_allocate`. Unset: the key's SHA-256, as a 32-bit integer, modulo their number.
   */
  allocate: option(z.custom<Allocator>(), {
    defaultText: "the key's SHA-256 modulo the runners",
    group: 'scheduling',
    doc: 'chooses the runner a new affinity key is allocated to, among the available runner ids',
  }),
  /**
   * Rate limits and concurrency caps, `SELECTOR=SPEC` each (master/scheduler/limit-spec.ts):
   * `module:resize=20/s`, `group:acme=100/1m, 5 concurrent`, `group:*=2 concurrent`. A limit stored
   * through `PUT /api/limits/SELECTOR` replaces the one given here for its selector (docs/rate-limits.md).
   */
  limits: option(
    z.array(z.string()).superRefine((texts, ctx) => {
      const r = limitRules(texts);
      if (!r.ok) ctx.addIssue({ code: 'custom', path: [r.index], message: r.message });
    }),
    {
      flag: '--limit',
      arg: '<selector=spec>',
      repeatable: true,
      default: [],
      defaultText: 'none',
      group: 'scheduling',
      doc: 'rate limit or concurrency cap: `module:NAME`, `group:NAME` or `group:*` `=` `N/DURATION` and/or `N concurrent` (e.g. `module:x=20/s`); repeatable',
    },
  ),
  /** Waiting and ready tasks allowed at once; an add beyond it is refused with EQUEUEFULL and a retry-after hint. */
  queueLimit: option(integer(1, 100_000_000), {
    flag: '--queue-limit',
    arg: '<n>',
    env: 'TASKMASTER_QUEUE_LIMIT',
    default: 1_000_000,
    group: 'limits',
    doc: 'waiting tasks before adds are refused (`EQUEUEFULL`)',
  }),
  /**
   * Bytes of the tasks the master holds in memory (every task not final, its params and fields as
   * JSON) allowed at once: `queueLimit` counts tasks, and a million large ones would not fit in
   * memory. An add beyond it is refused with EQUEUEFULL naming this setting and a retry-after hint.
   */
  queueLimitBytes: option(integer(1024, Number.MAX_SAFE_INTEGER), {
    flag: '--queue-limit-bytes',
    arg: '<n>',
    default: 1024 * 1024 * 1024,
    defaultText: '1 GiB',
    group: 'limits',
    doc: 'bytes of tasks held in memory (not final) before adds are refused (`EQUEUEFULL`)',
  }),
  /**
   * Tasks whose add is not durable yet (so not acknowledged) allowed at once; an add beyond it is
   * refused with EQUEUEFULL naming why the database is behind. It bounds the master's memory while
   * the database is slow, frozen or its disk full. One add is always taken when none waits, whatever
   * its size.
   */
  writeBacklogLimit: option(integer(1, 100_000_000), {
    flag: '--write-backlog-limit',
    arg: '<n>',
    default: 20_000,
    group: 'limits',
    doc: 'tasks of adds not yet written to the database before adds are refused (`EQUEUEFULL`)',
  }),
  /**
   * Largest task (its JSON) an add accepts; a larger one is refused with EVALIDATION naming it. At
   * most what one message carries. Unset: `maxMessageBytes` less 16 KiB of envelope.
   */
  maxTaskBytes: option(integer(1024, 16 * 1024 * 1024), {
    flag: '--max-task-bytes',
    arg: '<n>',
    defaultText: 'one message less 16 KiB (1,032,192)',
    group: 'limits',
    doc: 'largest task an add accepts, as JSON',
  }),
  /**
   * Largest payload of dependency results a task is given (`this.dependencies`, as JSON): results are
   * taken in the order the task names its dependencies, and one that does not fit is left out — the
   * task gets ETOOLARGE naming this setting if it reads it. At most `maxMessageBytes`.
   */
  maxDependencyBytes: option(integer(0, 256 * 1024 * 1024), {
    flag: '--max-dependency-bytes',
    arg: '<n>',
    default: DEFAULT_MAX_DEPENDENCY_BYTES,
    defaultText: '256 KB',
    group: 'limits',
    doc: "largest payload of dependencies' results a task is given, as JSON (at most `--max-message-bytes`)",
  }),
  /**
   * After a start, how long tasks found assigned or running wait for their runner to report them
   * before they are requeued (uncounted), counted from when the master accepts connections; the wait
   * ends early once every runner that held one has reconnected. Longer than a runner's longest
   * reconnect delay (5 s by default).
   */
  recoveryGraceMs: option(integer(0, 3_600_000), {
    flag: '--recovery-grace',
    arg: '<ms>',
    default: 10_000,
    group: 'recovery',
    doc: 'after a start, how long attempts found running wait for their runner',
  }),
  /** How long a disconnected runner's tasks wait for it to come back before they are requeued. */
  disconnectGraceMs: option(integer(0, 3_600_000), {
    flag: '--disconnect-grace',
    arg: '<ms>',
    default: 2000,
    group: 'recovery',
    doc: "how long a disconnected runner's attempts wait for it to come back",
  }),
};

/**
 * zod schemas for every payload that crosses a socket. Both ends parse what they receive with these;
 * the TypeScript types of the event maps are inferred from them, so the two cannot drift apart.
 */
import { z } from 'zod';
import { MAX_RUNNER_DATA_BYTES } from './limits';
import { TASK_STATES } from './states';

/** Module names: `name` or `folder/name`, letters, digits, `_`, `-`, `.`; no `..`, no leading `/` or `.`. */
export const MODULE_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]*(\/[A-Za-z0-9_][A-Za-z0-9_.-]*)*$/;

export const moduleName = z
  .string()
  .min(1, 'must not be empty')
  .max(200, 'must be at most 200 characters')
  .refine((s) => !s.includes('..'), 'must not contain ".."')
  .refine((s) => !s.startsWith('/') && !/^[A-Za-z]:/.test(s), 'must not be an absolute path')
  .refine((s) => MODULE_NAME.test(s), 'may only hold letters, digits, "_", "-", "." and "/" between names');

/** Extensions a runner tries, in order, after a module name without one (runner/loader.ts). */
export const TASK_EXTENSIONS: readonly string[] = Object.freeze(['.js', '.cjs', '.mjs', '.ts']);

/**
 * The name a runner announces a module under: a task may name its file with the extension
 * (`greet.js`), the runner announces `greet`.
 */
export function announcedName(module: string): string {
  const dot = module.lastIndexOf('.');
  if (dot <= module.lastIndexOf('/')) return module;
  return TASK_EXTENSIONS.includes(module.slice(dot)) ? module.slice(0, dot) : module;
}

export const taskId = z.string().min(1, 'must not be empty').max(200, 'must be at most 200 characters');

export const wireErrorSchema = z.object({
  code: z.string(),
  message: z.string(),
  details: z.unknown().optional(),
});

/** The longest delay Node's timers honour (a larger one fires at once). */
export const MAX_TIMER_MS = 2 ** 31 - 1;

const ms = z
  .number()
  .int('must be an integer')
  .positive('must be positive')
  .max(MAX_TIMER_MS, `must be at most ${MAX_TIMER_MS} ms (about 24.8 days)`);

/** The longest `delay` a task may ask for: about ten years. */
export const MAX_DELAY_MS = 315_576_000_000;
/** The latest time a Date can hold (epoch ms): the largest `runAt`. */
const MAX_EPOCH_MS = 8_640_000_000_000_000;
/** Below this an epoch is in seconds, not milliseconds (it would be before September 2001). */
const MIN_EPOCH_MS = 1_000_000_000_000;

const isoDateTime = z.iso.datetime({ offset: true });

/**
 * When a task may start, as epoch ms: an ISO 8601 date-time with its zone (`Z` or `+01:00`) or epoch
 * milliseconds. A zone is required: a time without one means another instant on every host. A time
 * in the past is allowed: the task is ready at once.
 */
export const runAtSchema = z
  .union([z.string(), z.number()], {
    error: 'must be an ISO 8601 date-time (e.g. "2026-12-07T12:00:00Z") or epoch milliseconds',
  })
  .transform((v, ctx) => {
    if (typeof v === 'string') {
      const at = isoDateTime.safeParse(v).success ? Date.parse(v) : NaN;
      if (Number.isFinite(at) && at <= MAX_EPOCH_MS) return at;
      ctx.addIssue({
        code: 'custom',
        message: `"${v.slice(0, 60)}" is not an ISO 8601 date-time with a zone (e.g. "2026-12-07T12:00:00Z")`,
      });
      return z.NEVER;
    }
    if (!Number.isInteger(v) || v > MAX_EPOCH_MS)
      ctx.addIssue({ code: 'custom', message: 'must be an integer number of epoch milliseconds' });
    else if (v < MIN_EPOCH_MS)
      ctx.addIssue({
        code: 'custom',
        message: `must be epoch milliseconds; ${v} looks like seconds (as ms it is in ${new Date(v).getUTCFullYear()})`,
      });
    else return v;
    return z.NEVER;
  });

/** Dependencies one task may name. */
export const MAX_DEPENDENCIES = 10_000;
/** Nesting levels allowed in a task's params (MongoDB refuses documents nested beyond 100). */
export const MAX_PARAMS_DEPTH = 64;

/** The longest dedup key, in characters. */
export const MAX_DEDUP_KEY = 500;

/** What a feeder sends for one task (with `runAt` or `delay`, not both: master/validate.ts). */
export const taskInputSchema = z.strictObject({
  /** Caller-chosen id, unique within the master; generated when absent. */
  id: taskId.optional(),
  module: moduleName,
  /** Applied as the module function's arguments. */
  params: z.array(z.unknown()).default([]),
  /** Higher runs first. */
  priority: z.number().finite().default(0),
  /** Ids of tasks (in this batch or already stored) that must be done first. */
  dependencies: z.array(taskId).max(MAX_DEPENDENCIES).default([]),
  /** Attempts before the task fails for good (default: the master's `maxAttempts`). */
  maxAttempts: z.number().int().min(1).max(1000).optional(),
  /** Global timeout in ms, from the feeder's call to the result (ECSTO). */
  timeout: ms.optional(),
  /** Run timeout in ms, from the start on the runner (ETO). */
  runTimeout: ms.optional(),
  /** Time in ms to get a runner once ready (EATO). */
  assignTimeout: ms.optional(),
  /** Only runners whose announced `data` has these values (a runner's array value matches any of its items). */
  requires: z.record(z.string(), z.union([z.string(), z.number(), z.boolean(), z.null()])).optional(),
  /**
   * Fair shares: a tenant, a customer. Within one priority, ready tasks are taken round-robin across
   * groups (FIFO within a group); `group:NAME` limits select by it.
   */
  group: z.string().min(1, 'must not be empty').max(200, 'must be at most 200 characters').optional(),
  /**
   * Set by a schedule on the task of a slot missed while no master ran, created late by its `misfire`
   * rule (`once` or `all`); never needed from a feeder.
   */
  backfilled: z.boolean().optional(),
  /** Sticky allocation: every task with this affinity key runs on the runner the key is allocated to. */
  affinity: z.string().min(1).max(500).optional(),
  /** Run on every connected runner that matches; the outcome's result maps each runner id to its own outcome. */
  broadcast: z.boolean().optional(),
  /** Only this runner (by runner id). */
  runner: z.string().min(1).max(200).optional(),
  /** Similar work shares this key: with the master's `holdSimilarWork`, one runs and the rest get its outcome. */
  key: z.string().min(1).max(500).optional(),
  /**
   * Deduplication: while a task with this `key` is not final (and, with `ttl`, until `ttl` ms after it
   * was added), an add of another task with the key creates nothing; its ref names the existing task
   * (`deduplicated`).
   */
  dedup: z
    .strictObject({
      key: z
        .string()
        .min(1, 'must not be empty')
        .max(MAX_DEDUP_KEY, `must be at most ${MAX_DEDUP_KEY} characters`),
      /** How long the key stays taken after the add, in ms, even once the task is final. */
      ttl: ms.optional(),
    })
    .optional(),
  /** Delay before a retry. */
  backoff: z
    .strictObject({
      type: z.enum(['fixed', 'exponential']).default('exponential'),
      /** First delay in ms. */
      delay: z.number().int().min(0).max(86_400_000),
      /** Largest delay in ms. Default 60000. */
      maxDelay: z.number().int().min(0).max(86_400_000).optional(),
      /** Spread delays randomly below their ceiling. Default true. */
      jitter: z.boolean().optional(),
    })
    .optional(),
  /**
   * Not before this time: an ISO 8601 date-time with a zone, or epoch ms (parsed to epoch ms). A time
   * in the past: ready at once.
   */
  runAt: runAtSchema.optional(),
  /** Not before this many ms after the master received the add (the master's clock). */
  delay: z
    .number()
    .int('must be an integer')
    .min(0, 'must not be negative')
    .max(MAX_DELAY_MS, `must be at most ${MAX_DELAY_MS} ms (about ten years)`)
    .optional(),
});
export type TaskInput = z.input<typeof taskInputSchema>;
export type ParsedTaskInput = z.output<typeof taskInputSchema>;

export const addRequestSchema = z.strictObject({
  tasks: z.array(z.unknown()).min(1, 'must hold at least one task').max(100_000),
  /** Optional batch name; generated when absent. */
  batch: z.string().min(1).max(200).optional(),
  /** Feeder's call time (epoch ms), the start of a task's global `timeout`. */
  calledAt: z.number().optional(),
  /**
   * A task whose id a stored task already has: `error` refuses the whole add (EVALIDATION naming the
   * id); `skip` leaves it out and answers with the existing task (`existing` in its ref), adding the
   * rest. Skip does not compare definitions: the existing task is kept whatever its module and params.
   */
  onExisting: z.enum(['error', 'skip']).default('error'),
  /**
   * Idempotency token of this add, the same on every try of it: an add whose task ids all exist,
   * created by an add with this key, is answered as that add was (same batch, a ref per task) and
   * stores nothing. Recognised through the tasks' ids, so it protects tasks that carry an `id`.
   */
  addKey: z.string().min(1).max(200).optional(),
});
export type AddRequest = z.input<typeof addRequestSchema>;
export type ParsedAddRequest = z.output<typeof addRequestSchema>;

export const cancelRequestSchema = z
  .strictObject({ ids: z.array(taskId).max(1_000_000).optional(), batch: z.string().min(1).optional() })
  .refine((r) => r.ids !== undefined || r.batch !== undefined, 'give ids or batch');
export const cancelReplySchema = z.union([
  z.object({ ok: z.literal(true), cancelled: z.array(z.string()) }),
  z.object({ ok: z.literal(false), error: wireErrorSchema }),
]);

/** `to`: 'MASTER', null (everybody) or a client id (a runner id or a socket id). */
export const sysmsgRequestSchema = z.object({
  msg: z.unknown(),
  to: z.union([z.literal('MASTER'), z.null(), z.string().min(1)]).default(null),
});
/** As a client sends it (`to` may be left out: everybody). */
export type SysmsgRequest = z.input<typeof sysmsgRequestSchema>;
export const sysmsgReplySchema = z.union([
  z.object({ ok: z.literal(true), delivered: z.number().int(), missed: z.number().int() }),
  z.object({ ok: z.literal(false), error: wireErrorSchema }),
]);

export const taskRefSchema = z.object({
  id: z.string(),
  _id: z.string(),
  /** With `onExisting: 'skip'`: this task was not added, a task with its id exists (its state now and batch). */
  existing: z.object({ state: z.enum(TASK_STATES), batch: z.string() }).optional(),
  /**
   * This task was not added: a task with its `dedup.key` holds the key (`id` is that task's id; its
   * state now and batch). `work` and `wait` give that task's outcome.
   */
  deduplicated: z.object({ state: z.enum(TASK_STATES), batch: z.string() }).optional(),
});
export type TaskRef = z.infer<typeof taskRefSchema>;

export const addReplySchema = z.union([
  z.object({
    ok: z.literal(true),
    batch: z.string(),
    tasks: z.array(taskRefSchema),
    /** Stored, but worth knowing: e.g. tasks that wait because no connected runner has their module. */
    warnings: z.array(z.string()).optional(),
  }),
  z.object({ ok: z.literal(false), error: wireErrorSchema }),
]);
export type AddReply = z.infer<typeof addReplySchema>;

/** A final outcome, as sent to feeders. */
export const taskOutcomeSchema = z.object({
  id: z.string(),
  batch: z.string().optional(),
  state: z.enum(['done', 'failed', 'cancelled']),
  result: z.unknown().optional(),
  error: wireErrorSchema.optional(),
  attempts: z.number().int(),
  /** Hash of the module version that produced the outcome. */
  moduleHash: z.string().optional(),
});
export type TaskOutcome = z.infer<typeof taskOutcomeSchema>;

export const outcomesSchema = z.object({ outcomes: z.array(taskOutcomeSchema) });

export const watchRequestSchema = z.object({ ids: z.array(taskId).max(1_000_000) });
export const watchReplySchema = z.union([
  z.object({ ok: z.literal(true), outcomes: z.array(taskOutcomeSchema), unknown: z.array(z.string()) }),
  z.object({ ok: z.literal(false), error: wireErrorSchema }),
]);

export const progressSchema = z.object({
  id: z.string(),
  attempt: z.number().int(),
  progress: z.number().finite(),
});

/**
 * One dependency of an assigned task: its result, or why it is left out — `leftOut` is the size of
 * its result as JSON, over what was left of the master's `maxDependencyBytes`, or 0 when the result
 * could not be found (purged). A list rather than an object: any string is a task id.
 */
export const dependencyResultSchema = z.object({
  id: z.string(),
  result: z.unknown().optional(),
  leftOut: z.number().int().nonnegative().optional(),
});
export type DependencyResult = z.infer<typeof dependencyResultSchema>;

/** One attempt of a task, as sent to a runner. */
export const assignmentSchema = z.object({
  id: z.string(),
  attempt: z.number().int().positive(),
  module: moduleName,
  params: z.array(z.unknown()),
  priority: z.number(),
  batch: z.string().optional(),
  runTimeout: ms.optional(),
  /** Its dependencies' results (the task's `this.dependencies`), in the order it names them. */
  dependencies: z.array(dependencyResultSchema).optional(),
  /** The master's `maxDependencyBytes`, when some result is left out (the task's error names it). */
  maxDependencyBytes: z.number().int().nonnegative().optional(),
});
export type Assignment = z.infer<typeof assignmentSchema>;
export const assignSchema = z.object({
  tasks: z.array(assignmentSchema).min(1),
  epoch: z.number().int().nonnegative().optional(),
});

/** What a runner reports about one attempt. */
export const attemptResultSchema = z.union([
  z.object({
    id: z.string(),
    attempt: z.number().int().positive(),
    ok: z.literal(true),
    result: z.unknown().optional(),
    moduleHash: z.string().optional(),
  }),
  z.object({
    id: z.string(),
    attempt: z.number().int().positive(),
    ok: z.literal(false),
    error: wireErrorSchema,
    /** The error says it must not be retried. */
    unrecoverable: z.boolean().optional(),
    moduleHash: z.string().optional(),
  }),
]);
export type AttemptResult = z.infer<typeof attemptResultSchema>;
export const attemptRefSchema = z.object({ id: z.string(), attempt: z.number().int().positive() });
/**
 * `task:results`. `started`: attempts of these results that also began since the last `task:started`
 * (a short task's start travels with its result); an older master ignores it and takes the result of
 * an attempt it still holds as assigned.
 */
export const resultsSchema = z.object({
  results: z.array(attemptResultSchema).min(1),
  started: z.array(attemptRefSchema).optional(),
});
export const resultsAckSchema = z.object({
  ok: z.boolean(),
  accepted: z.number().int(),
  stale: z.number().int(),
});

export const startedSchema = z.object({ tasks: z.array(attemptRefSchema).min(1) });

/** The master's answer to `task:release`: how many of the attempts it took back. */
export const releaseReplySchema = z.object({
  ok: z.boolean(),
  released: z.number().int().nonnegative().default(0),
  error: wireErrorSchema.optional(),
});

/** `task:cancel`: stop these attempts (cancelled, timed out, or reassigned); no result is expected. */
export const cancelSchema = z.object({
  tasks: z.array(attemptRefSchema),
  reason: z.string().default('cancelled'),
  epoch: z.number().int().nonnegative().optional(),
});

/** A system message as its recipients get it; they acknowledge it so the sender knows it arrived. */
export const sysmsgSchema = z.object({ msg: z.unknown(), from: z.string() });

export const moduleInfoSchema = z.object({ name: z.string(), hash: z.string() });
export type ModuleInfo = z.infer<typeof moduleInfoSchema>;

/** What a runner announces about itself (`--data`), shown by the status API and every dashboard tick. */
export const runnerDataSchema = z
  .record(z.string(), z.unknown())
  .refine((d) => Buffer.byteLength(JSON.stringify(d) ?? '') <= MAX_RUNNER_DATA_BYTES, {
    message: `must be at most ${MAX_RUNNER_DATA_BYTES} bytes as JSON`,
  });

export const helloSchema = z.object({
  runnerId: z.string().min(1).max(200),
  hostname: z.string().max(200).optional(),
  pid: z.number().int().optional(),
  slots: z.number().int().min(1).max(100_000),
  /** Guaranteed slots per priority range, e.g. `{ "1": 30, "2": 20 }` (see master/scheduler/priority-slots.ts). */
  prioritySlots: z
    .record(z.string().regex(/^-?\d+(\.\d+)?$/, 'must be a number'), z.number().int().min(0))
    .optional(),
  workers: z.number().int().min(1).max(1024),
  data: runnerDataSchema.default({}),
  /**
   * The modules this runner can run (`runner:modules` updates them): tasks of other modules are not
   * sent to it. A hello without `modules` announces none: any module is sent to it, as to a runner of
   * the original protocol.
   */
  modules: z.array(moduleInfoSchema).optional(),
  /** Attempts this runner is still running (after a reconnect). */
  running: z.array(attemptRefSchema).default([]),
});
export type Hello = z.input<typeof helloSchema>;
export const helloReplySchema = z.union([
  z.object({
    ok: z.literal(true),
    runnerId: z.string(),
    drop: z.array(attemptRefSchema),
    /** The master's limits the runner must respect (older masters send none). */
    limits: z.object({ maxMessageBytes: z.number().int().positive() }).optional(),
    epoch: z.number().int().nonnegative().optional(),
  }),
  z.object({ ok: z.literal(false), error: wireErrorSchema }),
]);
export type HelloReply = z.infer<typeof helloReplySchema>;

export const modulesUpdateSchema = z.object({ modules: z.array(moduleInfoSchema) });

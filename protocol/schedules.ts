/**
 * Recurring schedules on the wire: the definition a feeder (or the HTTP API) sends, the view the
 * master answers with, and the replies of `schedules:put`, `schedules:remove` and `schedules:list`.
 * Both ends parse with these. What only the master can check (that a cron expression parses) is
 * checked there and reported under the same field name (`cron: …`).
 */
import { z } from 'zod';
import { taskInputSchema, wireErrorSchema } from './schemas';

/** A slot's task id is `<schedule id>@<slot time ISO>` (24 characters): it must fit a task id's 200. */
export const MAX_SCHEDULE_ID = 175;
/** Most missed slots a `misfire: 'all'` schedule backfills at once. */
export const MAX_BACKFILL = 1000;
/** The shortest `every`, in ms. */
export const MIN_EVERY_MS = 100;

export const MISFIRE_MODES = Object.freeze(['skip', 'once', 'all'] as const);

export const scheduleId = z
  .string()
  .min(1, 'must not be empty')
  .max(MAX_SCHEDULE_ID, `must be at most ${MAX_SCHEDULE_ID} characters`)
  .refine(
    (s) => !s.includes('@'),
    'must not contain "@" (it separates the schedule from the slot in task ids)',
  );

/** An instant: an ISO 8601 string with a date and a time, or epoch ms; parsed to epoch ms. */
const instant = z
  .union([z.number().int('must be an integer (epoch ms)').nonnegative(), z.string().max(100)])
  .transform((v, ctx) => {
    const t = typeof v === 'number' ? v : Date.parse(v);
    if (typeof v === 'string' && (!/^\d{4}-\d\d-\d\dT/.test(v) || Number.isNaN(t))) {
      ctx.addIssue({ code: 'custom', message: 'must be an ISO 8601 date and time, or epoch ms' });
      return z.NEVER;
    }
    return t;
  });

/** Whether this runtime knows the IANA time zone `tz`. */
export function knownTimeZone(tz: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: tz });
    return true;
  } catch {
    return false;
  }
}

/** The task each slot creates: any task field but `id` (the slot gives it) and `backfilled`. */
export const scheduleTaskSchema = taskInputSchema.omit({ id: true, backfilled: true });

/** A schedule as a feeder or the HTTP API defines it. */
export const scheduleInputSchema = z
  .strictObject({
    id: scheduleId,
    /** 5 fields (minute precision) or 6 (seconds first). */
    cron: z.string().min(1, 'must not be empty').max(200, 'must be at most 200 characters').optional(),
    /** Interval in ms; slots fall on `startAt` + k·every, or on multiples of `every` since 1970 UTC. */
    every: z
      .number()
      .int('must be an integer (ms)')
      .min(MIN_EVERY_MS, `must be at least ${MIN_EVERY_MS} ms`)
      .max(366 * 86_400_000, 'must be at most a year')
      .optional(),
    /** IANA time zone the cron expression is read in (default UTC). */
    tz: z
      .string()
      .min(1, 'must not be empty')
      .max(100)
      .refine(knownTimeZone, 'unknown time zone (give an IANA name such as Europe/Berlin)')
      .optional(),
    task: scheduleTaskSchema,
    /** Slots missed while no master ran: none, the most recent one (default), or each (up to 1,000). */
    misfire: z.enum(MISFIRE_MODES).default('once'),
    /** No slot before this instant. */
    startAt: instant.optional(),
    /** No slot after this instant. */
    endAt: instant.optional(),
    /** At most this many tasks in all. */
    limit: z.number().int('must be an integer').min(1, 'must be at least 1').optional(),
  })
  .superRefine((s, ctx) => {
    if (s.cron === undefined && s.every === undefined)
      ctx.addIssue({ code: 'custom', path: ['cron'], message: 'give cron or every' });
    if (s.cron !== undefined && s.every !== undefined)
      ctx.addIssue({ code: 'custom', path: ['every'], message: 'give cron or every, not both' });
    if (s.tz !== undefined && s.cron === undefined)
      ctx.addIssue({ code: 'custom', path: ['tz'], message: 'applies to cron only' });
    if (s.startAt !== undefined && s.endAt !== undefined && s.endAt < s.startAt)
      ctx.addIssue({ code: 'custom', path: ['endAt'], message: 'must not be before startAt' });
  });
export type ScheduleInput = z.input<typeof scheduleInputSchema>;
export type ScheduleDefinition = z.output<typeof scheduleInputSchema>;

/** A schedule as the master shows it: its definition and its progress. */
export const scheduleViewSchema = z.object({
  id: z.string(),
  cron: z.string().optional(),
  every: z.number().optional(),
  tz: z.string().optional(),
  task: z.record(z.string(), z.unknown()),
  misfire: z.enum(MISFIRE_MODES),
  startAt: z.string().optional(),
  endAt: z.string().optional(),
  limit: z.number().optional(),
  /** The next slot (ISO, UTC); null once the schedule has ended (`endAt` passed or `limit` reached). */
  nextAt: z.string().nullable(),
  /** The last slot fired (ISO, UTC). */
  lastSlot: z.string().nullable(),
  /** Tasks created. */
  count: z.number(),
  created: z.string(),
  updated: z.string(),
});
export type ScheduleView = z.output<typeof scheduleViewSchema>;

export const schedulePutReplySchema = z.union([
  z.object({
    ok: z.literal(true),
    /** `unchanged`: the same definition was stored already, nothing changed. */
    outcome: z.enum(['created', 'changed', 'unchanged']),
    schedule: scheduleViewSchema,
  }),
  z.object({ ok: z.literal(false), error: wireErrorSchema }),
]);
export type SchedulePutReply = z.output<typeof schedulePutReplySchema>;

export const scheduleRemoveRequestSchema = z.strictObject({ id: scheduleId });
export const scheduleRemoveReplySchema = z.union([
  z.object({ ok: z.literal(true), removed: z.boolean() }),
  z.object({ ok: z.literal(false), error: wireErrorSchema }),
]);
export type ScheduleRemoveReply = z.output<typeof scheduleRemoveReplySchema>;

export const scheduleListRequestSchema = z.strictObject({});
export const scheduleListReplySchema = z.union([
  z.object({ ok: z.literal(true), schedules: z.array(scheduleViewSchema) }),
  z.object({ ok: z.literal(false), error: wireErrorSchema }),
]);
export type ScheduleListReply = z.output<typeof scheduleListReplySchema>;

/**
 * The slots of a schedule: the instants its tasks are due, from its `cron` (master/schedules/cron.ts)
 * or its `every`, within `startAt` and `endAt`. Each slot is computed from the slot before it, never
 * from when that one ran, so a late run does not shift the ones after it.
 */
import type { ScheduleDefinition } from '../../protocol/schedules';
import { cronRule, type CronRule } from './cron';

export interface SlotClock {
  /** The first slot strictly after `after` (epoch ms), or null: the schedule has no more. */
  next(after: number): number | null;
  /** The last slot in (`after`, `atOrBefore`], or null if there is none. */
  latest(after: number, atOrBefore: number): number | null;
}

/**
 * `every` slots fall on `anchor` + k·every: `startAt`, or the Unix epoch, so they do not depend on
 * when the schedule was stored (two masters, or a changed definition, compute the same ones).
 */
function everyRule(every: number, anchor: number): CronRule {
  const next = (after: number) =>
    after < anchor ? anchor : anchor + (Math.floor((after - anchor) / every) + 1) * every;
  return {
    next,
    latest(after, atOrBefore) {
      if (atOrBefore < anchor) return null;
      const t = anchor + Math.floor((atOrBefore - anchor) / every) * every;
      return t > after ? t : null;
    },
  };
}

/** The clock of a definition; EVALIDATION naming `cron` or `tz` when the expression does not parse. */
export function slotClock(def: ScheduleDefinition): SlotClock {
  const rule =
    def.cron !== undefined ? cronRule(def.cron, def.tz) : everyRule(def.every as number, def.startAt ?? 0);
  const start = def.startAt ?? -Infinity;
  const end = def.endAt ?? Infinity;
  return {
    next(after) {
      const t = rule.next(Math.max(after, start - 1));
      return t !== null && t <= end ? t : null;
    },
    latest(after, atOrBefore) {
      const t = rule.latest(Math.max(after, start - 1), Math.min(atOrBefore, end));
      return t !== null && t >= start ? t : null;
    },
  };
}

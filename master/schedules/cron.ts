/**
 * The one place that knows the cron library (croner): a cron expression of 5 fields (minute
 * precision) or 6 (seconds first), read in an IANA time zone, as a function from an instant to the
 * next slot after it. Everything else in master/schedules/ sees only `CronRule`.
 *
 * Daylight saving time follows Vixie cron, as croner documents it: a fixed time (one value in each
 * of seconds, minutes and hours, e.g. `30 2 * * *`) runs once on the days clocks change — at its first
 * occurrence when the hour repeats, right after the gap when it does not exist; an interval
 * (a step, a range or a list in seconds, minutes or hours, e.g. every 15 minutes) keeps its interval
 * in real time through both.
 */
import { Cron } from 'croner';
import { TaskmasterError } from '../../protocol/errors';

export interface CronRule {
  /** The first slot strictly after `after` (epoch ms), or null if there is none. */
  next(after: number): number | null;
  /** The last slot at or before `atOrBefore` and strictly after `after`, or null. */
  latest(after: number, atOrBefore: number): number | null;
}

/** The rule of `expr` in `tz` (default UTC); EVALIDATION naming `cron` or `tz` if either is wrong. */
export function cronRule(expr: string, tz = 'UTC'): CronRule {
  const fields = expr.trim().split(/\s+/).length;
  if (fields !== 5 && fields !== 6)
    throw new TaskmasterError('EVALIDATION', `cron: must have 5 or 6 fields (seconds first), got ${fields}`);
  let cron: Cron;
  try {
    cron = new Cron(expr, { timezone: tz, paused: true, mode: '5-or-6-parts' });
    // A bad time zone shows only when a date is computed.
    cron.nextRun(new Date(0));
  } catch (err) {
    const text = String((err as Error).message ?? err);
    if (/timezone/i.test(text)) throw new TaskmasterError('EVALIDATION', `tz: unknown time zone "${tz}"`);
    throw new TaskmasterError('EVALIDATION', `cron: ${text.replace(/^CronPattern: /, '')}`);
  }
  return {
    next(after) {
      return cron.nextRun(new Date(after))?.getTime() ?? null;
    },
    latest(after, atOrBefore) {
      // previousRuns looks strictly before its reference, in whole seconds: from a second later, the
      // two latest hold the one at or before `atOrBefore` (slots are whole seconds apart).
      const t = cron
        .previousRuns(2, new Date(atOrBefore + 1000))
        .map((d) => d.getTime())
        .find((x) => x <= atOrBefore);
      return t !== undefined && t > after ? t : null;
    },
  };
}

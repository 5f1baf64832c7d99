/**
 * The slots of a schedule (master/schedules/slots.ts over the cron adapter, master/schedules/cron.ts):
 * 5 and 6 fields, time zones on the days clocks change in America/New_York and Europe/Berlin (a
 * fixed time fires once; a 15-minute step keeps its interval), `every`, `startAt`/`endAt`, and the
 * refusals that name the field.
 */
import { cronRule } from '../../master/schedules/cron';
import { slotClock } from '../../master/schedules/slots';
import { scheduleInputSchema, type ScheduleInput } from '../../protocol/schedules';
import { TaskmasterError } from '../../protocol/errors';

const at = (iso: string) => Date.parse(iso);
const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

/** The slots in [from, to), in order. */
function slotsBetween(expr: string, tz: string, from: string, to: string): string[] {
  const rule = cronRule(expr, tz);
  const out: string[] = [];
  for (let t = rule.next(at(from) - 1); t !== null && t < at(to); t = rule.next(t))
    out.push(iso(t) as string);
  return out;
}

function clock(def: Partial<ScheduleInput>) {
  return slotClock(scheduleInputSchema.parse({ id: 's', task: { module: 'm' }, ...def }));
}

describe('cron adapter: a fixed time in a zone fires once on the days clocks change', () => {
  // Each day from its local midnight to the next (23 or 25 hours).
  test.each([
    // Spring forward: 02:30 does not exist that day; it runs right after the gap, once.
    [
      'America/New_York',
      '30 2 * * *',
      '2026-03-08T05:00:00Z',
      '2026-03-09T04:00:00Z',
      '2026-03-08T07:00:00.000Z',
    ],
    // Fall back: 01:30 happens twice; it runs at the first, once.
    [
      'America/New_York',
      '30 1 * * *',
      '2026-11-01T04:00:00Z',
      '2026-11-02T05:00:00Z',
      '2026-11-01T05:30:00.000Z',
    ],
    [
      'Europe/Berlin',
      '30 2 * * *',
      '2026-03-28T23:00:00Z',
      '2026-03-29T22:00:00Z',
      '2026-03-29T01:00:00.000Z',
    ],
    [
      'Europe/Berlin',
      '30 2 * * *',
      '2026-10-24T22:00:00Z',
      '2026-10-25T23:00:00Z',
      '2026-10-25T00:30:00.000Z',
    ],
  ])('%s %s', (tz, expr, dayStart, dayEnd, expected) => {
    expect(slotsBetween(expr, tz, dayStart, dayEnd)).toEqual([expected]);
  });

  test('the same fixed time fires on every ordinary day at the zone offset', () => {
    expect(
      slotsBetween('0 3 * * *', 'Europe/Berlin', '2026-07-01T00:00:00Z', '2026-07-04T00:00:00Z'),
    ).toEqual(['2026-07-01T01:00:00.000Z', '2026-07-02T01:00:00.000Z', '2026-07-03T01:00:00.000Z']);
  });
});

describe('cron adapter: */15 keeps its interval through the change', () => {
  test.each([
    ['America/New_York', '2026-03-08T05:00:00Z', 12 * 4], // spring: a 23-hour day
    ['America/New_York', '2026-11-01T04:00:00Z', 12 * 4], // autumn: the repeated hour runs twice
    ['Europe/Berlin', '2026-03-28T22:00:00Z', 12 * 4],
    ['Europe/Berlin', '2026-10-24T22:00:00Z', 12 * 4],
  ])('%s from %s: every 15 minutes of real time for 12 hours', (tz, from, n) => {
    const to = new Date(at(from) + 12 * 3600_000).toISOString();
    const slots = slotsBetween('*/15 * * * *', tz, from, to).map(at);
    expect(slots).toHaveLength(n);
    const gaps = new Set(slots.slice(1).map((t, i) => t - slots[i]));
    expect([...gaps]).toEqual([15 * 60_000]);
  });
});

describe('cron adapter: fields and refusals', () => {
  test('5 fields have minute precision, 6 take seconds first', () => {
    expect(slotsBetween('*/20 * * * * *', 'UTC', '2026-01-01T00:00:00Z', '2026-01-01T00:01:00Z')).toEqual([
      '2026-01-01T00:00:00.000Z',
      '2026-01-01T00:00:20.000Z',
      '2026-01-01T00:00:40.000Z',
    ]);
    expect(slotsBetween('* * * * *', 'UTC', '2026-01-01T00:00:30Z', '2026-01-01T00:03:00Z')).toEqual([
      '2026-01-01T00:01:00.000Z',
      '2026-01-01T00:02:00.000Z',
    ]);
  });

  test('latest gives the most recent slot within the range, or null', () => {
    const rule = cronRule('0 * * * *', 'UTC');
    expect(iso(rule.latest(at('2026-01-01T00:00:00Z'), at('2026-01-01T05:30:00Z')))).toBe(
      '2026-01-01T05:00:00.000Z',
    );
    expect(iso(rule.latest(at('2026-01-01T05:00:00Z'), at('2026-01-01T05:30:00Z')))).toBeNull();
    expect(iso(rule.latest(at('2026-01-01T04:00:00Z'), at('2026-01-01T05:00:00Z')))).toBe(
      '2026-01-01T05:00:00.000Z',
    );
  });

  test.each([
    ['61 * * * *', 'UTC', /^cron: .*minute/],
    ['* * * *', 'UTC', /^cron: must have 5 or 6 fields/],
    ['* * * * * * *', 'UTC', /^cron: must have 5 or 6 fields/],
    ['not a cron', 'UTC', /^cron: /],
    ['* * * * *', 'Mars/Olympus', /^tz: unknown time zone "Mars\/Olympus"/],
  ])('%s in %s is refused naming the field', (expr, tz, message) => {
    let caught: unknown;
    try {
      cronRule(expr, tz);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(TaskmasterError);
    expect((caught as TaskmasterError).code).toBe('EVALIDATION');
    expect((caught as Error).message).toMatch(message);
  });
});

describe('slot clock', () => {
  test('every: slots on multiples since the epoch, or since startAt', () => {
    const c = clock({ every: 1000 });
    expect(c.next(at('2026-01-01T00:00:00.400Z'))).toBe(at('2026-01-01T00:00:01Z'));
    expect(c.next(at('2026-01-01T00:00:01Z'))).toBe(at('2026-01-01T00:00:02Z'));
    expect(c.latest(at('2026-01-01T00:00:00Z'), at('2026-01-01T00:00:03.500Z'))).toBe(
      at('2026-01-01T00:00:03Z'),
    );
    const s = clock({ every: 1000, startAt: '2026-01-01T00:00:00.250Z' });
    expect(iso(s.next(0))).toBe('2026-01-01T00:00:00.250Z');
    expect(iso(s.next(at('2026-01-01T00:00:00.250Z')))).toBe('2026-01-01T00:00:01.250Z');
  });

  test('startAt and endAt bound the slots (both inclusive)', () => {
    const c = clock({ cron: '0 * * * *', startAt: '2026-01-01T02:00:00Z', endAt: '2026-01-01T04:00:00Z' });
    const slots: (string | null)[] = [];
    for (let t = c.next(0); t !== null; t = c.next(t)) slots.push(iso(t));
    expect(slots).toEqual([
      '2026-01-01T02:00:00.000Z',
      '2026-01-01T03:00:00.000Z',
      '2026-01-01T04:00:00.000Z',
    ]);
    expect(c.latest(0, at('2026-01-01T09:00:00Z'))).toBe(at('2026-01-01T04:00:00Z'));
  });

  test.each([
    [{ task: { module: 'm' } }, 'cron', 'give cron or every'],
    [{ cron: '* * * * *', every: 1000, task: { module: 'm' } }, 'every', 'not both'],
    [{ every: 1000, tz: 'Europe/Berlin', task: { module: 'm' } }, 'tz', 'cron only'],
    [{ cron: '* * * * *', tz: 'Nowhere/Land', task: { module: 'm' } }, 'tz', 'unknown time zone'],
    [{ every: 1000, task: { module: 'm' }, misfire: 'sometimes' }, 'misfire', ''],
    [{ every: 1000, task: { module: 'm' }, startAt: 'tomorrow' }, 'startAt', 'ISO 8601'],
    [{ every: 1000, task: {} }, 'task.module', ''],
    [{ every: 1000, task: { module: 'm', id: 'x' } }, 'task', 'id'],
  ])('%j is refused naming %s', (def, path, message) => {
    const r = scheduleInputSchema.safeParse({ id: 's', ...def });
    expect(r.success).toBe(false);
    const issue = r.error?.issues.find((i) => i.path.join('.') === path);
    expect(issue).toBeDefined();
    expect(`${issue?.message} ${JSON.stringify(issue)}`).toContain(message);
  });
});

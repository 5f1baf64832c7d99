/**
 * Rate limits and concurrency caps on a real master, runners and database: starts as the children
 * see them (each `timed` task reports when it began, in its own process) never exceed the window,
 * across every runner; a concurrency cap per group holds; limits set through the API are stored and
 * survive a restart; bad input is refused naming the field; a task that reports a rate limit goes
 * back without counting an attempt, and waits the time it asked for.
 */
import { CLOCK_MARGIN_MS } from '../../master/scheduler/policies/limits';
import type { TaskOutcome } from '../../protocol/schemas';
import { useCluster } from '../helpers/use-cluster';
import { eventually } from '../helpers/wait';

const RATE = 20;
const WINDOW_MS = 1000;

interface Timed {
  label: string;
  start: number;
  end: number;
}

function timedOf(outcomes: TaskOutcome[]): Timed[] {
  for (const o of outcomes) expect(o).toMatchObject({ state: 'done' });
  return outcomes.map((o) => o.result as Timed);
}

/** The most starts found in any window `[t, t + windowMs)`. */
function busiestWindow(starts: number[], windowMs: number): number {
  const s = [...starts].sort((a, b) => a - b);
  let most = 0;
  let j = 0;
  for (let i = 0; i < s.length; i++) {
    while (s[i] - s[j] >= windowMs) j++;
    most = Math.max(most, i - j + 1);
  }
  return most;
}

/** The most intervals open at once. */
function mostAtOnce(runs: Timed[]): number {
  const edges = runs.flatMap((r) => [
    [r.start, 1],
    [r.end, -1],
  ]);
  // An end before a start at the same instant: touching intervals do not overlap.
  edges.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let open = 0;
  let most = 0;
  for (const [, d] of edges) most = Math.max(most, (open += d));
  return most;
}

/** What the routes answer, loosely: each test reads the fields of its route. */
interface ApiBody {
  code?: string;
  message?: string;
  until?: string;
  error?: { code: string; message: string };
  limit?: Record<string, unknown> | null;
  limits?: Record<string, unknown>[];
  deleted?: boolean;
}

describe('limits', () => {
  const c = useCluster({
    masterOptions: { limits: [`module:timed=${RATE}/s`, 'group:*=2 concurrent'] },
    runners: 3,
    runnerOptions: { workers: 2, slots: 8 },
    feeder: { waitMs: 60_000 },
  });

  const api = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(new URL(path, c.url), {
      method,
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: res.status, body: (await res.json()) as ApiBody };
  };

  test(`module:timed=${RATE}/s across 3 runners: no second holds more than ${RATE} starts, and the rate reaches 18/s`, async () => {
    const n = 240;
    const tasks = Array.from({ length: n }, (_, i) => ({ module: 'timed', params: [0, `r${i}`] }));
    const starts = timedOf(await c.feeder.work(tasks)).map((r) => r.start);
    expect(busiestWindow(starts, WINDOW_MS)).toBeLessThanOrEqual(RATE);
    // Enough work waited all along: over the first 10 s, at least 18 a second on average.
    const first = Math.min(...starts);
    const in10s = starts.filter((s) => s < first + 10_000).length;
    expect(in10s).toBeGreaterThanOrEqual(180);
  }, 60_000);

  test('group:*=2 concurrent: never more than 2 tasks of one group at once, each group on its own', async () => {
    const groups = ['a', 'b', 'c'];
    const tasks = groups.flatMap((g) =>
      Array.from({ length: 6 }, (_, i) => ({ module: 'timed', params: [150, `${g}${i}`], group: g })),
    );
    const runs = timedOf(await c.feeder.work(tasks));
    for (const g of groups) {
      const mine = runs.filter((r) => r.label.startsWith(g));
      expect(mine).toHaveLength(6);
      expect(mostAtOnce(mine)).toBeLessThanOrEqual(2);
    }
    // The groups ran beside each other: the cap is per group, not for all.
    expect(mostAtOnce(runs)).toBeGreaterThan(2);
  }, 60_000);

  test('a task over its limit is LIMITED in why, with the time it may go', async () => {
    expect((await api('PUT', '/api/limits/module:value', { spec: '1/5s' })).status).toBe(200);
    const [first] = await c.feeder.work([{ module: 'value', params: [1] }]);
    expect(first.state).toBe('done');
    const askedAt = Date.now();
    const [second] = await c.feeder.add([{ module: 'value', params: [2] }]);
    const why = await eventually(async () => {
      const r = await api('GET', `/api/tasks/${second.id}/why`);
      return r.body.code === 'LIMITED' ? r.body : null;
    });
    expect(why.message).toMatch(/^limited by module:value \(1\/5s\): may go at /);
    const until = Date.parse(why.until as string);
    expect(until).toBeGreaterThan(askedAt);
    // The first start's time is its report's, plus a margin for the fraction of a millisecond Date.now
    // drops and a child's clock: an outcome can now reach the feeder within that margin of its start.
    expect(until).toBeLessThanOrEqual(askedAt + 5000 + CLOCK_MARGIN_MS);
    // Lifted, the task goes at once.
    expect((await api('DELETE', '/api/limits/module:value')).status).toBe(200);
    expect((await c.feeder.outcome(second.id)).state).toBe('done');
    expect(Date.now()).toBeLessThan(until);
  });

  test('the API refuses bad input naming the field, and changes nothing', async () => {
    const before = await api('GET', '/api/limits');
    const cases: [string, unknown, string, RegExp][] = [
      ['/api/limits/modul:x', { spec: '5/s' }, 'selector', /must be module:NAME, group:NAME or group:\*/],
      ['/api/limits/module:*', { spec: '5/s' }, 'selector', /module:\*/],
      ['/api/limits/module:x', { spec: '20/q' }, 'spec', /duration/],
      ['/api/limits/module:x', { spec: '0/s' }, 'spec', /count must be from 1/],
      ['/api/limits/module:x', { spec: 'lots' }, 'spec', /is not a limit/],
      ['/api/limits/module:x', { spec: '1/s, 2/s' }, 'spec', /rate twice/],
      ['/api/limits/module:x', {}, 'spec', /./],
      ['/api/limits/module:x', { spec: '5/s', extra: 1 }, '(root)', /extra/],
    ];
    for (const [path, body, field, message] of cases) {
      const r = await api('PUT', path, body);
      expect({ path, body, status: r.status, code: r.body.error?.code }).toEqual({
        path,
        body,
        status: 400,
        code: 'EVALIDATION',
      });
      expect(r.body.error?.message).toMatch(new RegExp(`^${field.replace(/[()]/g, '\\$&')}: `));
      expect(r.body.error?.message).toMatch(message);
    }
    expect((await api('DELETE', '/api/limits/module:nothing-stored')).status).toBe(404);
    expect((await api('GET', '/api/limits')).body.limits).toEqual(before.body.limits);
  });

  test('rateLimited(ms) and an ERATELIMITED error: back to ready without counting an attempt, after the wait', async () => {
    const wait = 600;
    for (const how of ['call', 'throw']) {
      const began = Date.now();
      const [o] = await c.feeder.work([{ module: 'rate-limited', params: [how, wait], maxAttempts: 1 }]);
      expect({ how, state: o.state }).toEqual({ how, state: 'done' });
      const r = o.result as { start: number; attempt: number };
      expect(r.attempt).toBe(2);
      expect(r.start - began).toBeGreaterThanOrEqual(wait);
    }
  });

  test('a limit set through the API is stored and survives a master restart', async () => {
    const put = await api('PUT', '/api/limits/module:slow', { spec: '1 concurrent' });
    expect(put).toMatchObject({
      status: 200,
      body: { limit: { selector: 'module:slow', spec: '1 concurrent', source: 'stored', concurrent: 1 } },
    });
    const over = await api('PUT', '/api/limits/module:timed', { spec: '50/s' });
    expect(over.body.limit).toMatchObject({
      source: 'stored',
      replaces: `${RATE}/s`,
      rate: { n: 50, windowMs: 1000 },
    });
    await c.restart();
    const got = await api('GET', '/api/limits');
    expect(got.body.limits).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ selector: 'module:slow', spec: '1 concurrent', source: 'stored' }),
        expect.objectContaining({ selector: 'module:timed', spec: '50/s', source: 'stored' }),
        expect.objectContaining({ selector: 'group:*', spec: '2 concurrent', source: 'option' }),
      ]),
    );
    // And it holds: two slow tasks never overlap.
    const [a, b] = await c.feeder.add([
      { module: 'slow', params: [2000] },
      { module: 'slow', params: [10] },
    ]);
    await eventually(async () => (await api('GET', `/api/tasks/${a.id}/why`)).body.code === 'ASSIGNED');
    await eventually(async () => (await api('GET', `/api/tasks/${b.id}/why`)).body.code === 'LIMITED');
    // Deleting the stored one brings the option's back.
    const del = await api('DELETE', '/api/limits/module:timed');
    expect(del.body).toMatchObject({ deleted: true, limit: { spec: `${RATE}/s`, source: 'option' } });
    await c.feeder.cancel([a.id, b.id]);
  }, 60_000);
});

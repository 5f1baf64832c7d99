/**
 * Fair shares (task field `group`, master option `groupWeights`) through a real master, runners and
 * database: within one priority, groups take turns in proportion to their weights, FIFO within a
 * group; a higher priority still goes first.
 */
import type { TaskOutcome } from '../../protocol/schemas';
import { testDbName } from '../helpers/db';
import { useCluster } from '../helpers/use-cluster';
import { within, WAIT_MS } from '../helpers/wait';

interface Timed {
  label: string;
  start: number;
}

/**
 * Collects the feeder's outcomes of these tasks (a feeder replays earlier outcomes to a new
 * listener); `until(n)` resolves once `n` have come.
 */
function outcomesOf(
  feeder: { on(e: 'result', f: (o: TaskOutcome) => void): unknown },
  tasks: { id: string }[],
) {
  const ids = new Set(tasks.map((t) => t.id));
  const got: TaskOutcome[] = [];
  const waiters: { n: number; resolve: () => void }[] = [];
  feeder.on('result', (o) => {
    if (!ids.has(o.id)) return;
    got.push(o);
    for (const w of waiters) if (got.length >= w.n) w.resolve();
  });
  return {
    got,
    until: (n: number) =>
      within(
        WAIT_MS,
        new Promise<void>((resolve) => (got.length >= n ? resolve() : waiters.push({ n, resolve }))),
        () => `${n} outcomes (got ${got.length})`,
      ),
  };
}

/** The labels of the outcomes, in the order their tasks started. */
function byStart(outcomes: TaskOutcome[]): string[] {
  return outcomes
    .map((o) => o.result as Timed)
    .sort((a, b) => a.start - b.start)
    .map((r) => r.label);
}

let added = 0;
function timed(group: string, n: number, extra: { priority?: number } = {}) {
  return Array.from({ length: n }, () => ({
    id: `${group}-${++added}`,
    module: 'timed',
    params: [0, group],
    group,
    ...extra,
  }));
}

describe('fair shares: weights and priority', () => {
  const c = useCluster({
    dbName: testDbName('fair-weights'),
    masterOptions: { groupWeights: { heavy: 3 } },
    feeder: true,
  });

  test('weight 3 against 1: three starts of the heavy group for one of the other while both wait', async () => {
    const heavyTasks = timed('heavy', 120);
    const lightTasks = timed('light', 120);
    const seen = outcomesOf(c.feeder, [...heavyTasks, ...lightTasks]);
    // heavy queued first, all of it: FIFO alone would run all 120 before any of light.
    await c.feeder.add(heavyTasks);
    await c.feeder.add(lightTasks);
    const runner = await c.startRunner({ workers: 1, slots: 1 });
    await seen.until(240);
    await runner.close();
    expect(seen.got.every((o) => o.state === 'done')).toBe(true);
    // Both are backlogged for the first 150 starts (heavy's 120th comes at about the 160th).
    const first = byStart(seen.got).slice(0, 150);
    const heavy = first.filter((g) => g === 'heavy').length;
    expect(heavy).toBeGreaterThanOrEqual(108);
    expect(heavy).toBeLessThanOrEqual(117);
    // Spread out: every 40 starts hold about 30 of heavy, never a long run of either.
    for (let i = 0; i + 40 <= 150; i += 40) {
      const h = first.slice(i, i + 40).filter((g) => g === 'heavy').length;
      expect(h).toBeGreaterThanOrEqual(27);
      expect(h).toBeLessThanOrEqual(33);
    }
  });

  test('a higher priority goes before every group of a lower one, whatever their weights and turns', async () => {
    const batches = [timed('heavy', 30), timed('plain', 30), timed('urgent', 10, { priority: 5 })];
    const seen = outcomesOf(c.feeder, batches.flat());
    for (const b of batches) await c.feeder.add(b);
    // The API (and the dashboard's task view) shows a task's group.
    const res = await fetch(new URL(`/api/tasks/${batches[0][0].id}`, c.master.url));
    expect(((await res.json()) as { task: { group?: string } }).task.group).toBe('heavy');
    const runner = await c.startRunner({ workers: 1, slots: 1 });
    await seen.until(70);
    await runner.close();
    const order = byStart(seen.got);
    expect(order.slice(0, 10)).toEqual(Array.from({ length: 10 }, () => 'urgent'));
    expect(order.slice(10).includes('urgent')).toBe(false);
  });
});

describe('fair shares: a small group beside a large backlog', () => {
  const c = useCluster({ dbName: testDbName('fair-backlog'), feeder: true });

  test("group A with 20,000 queued and group B's 20 added after: all of B done before A's 500th", async () => {
    const done = { a: 0, b: 0, aWhenB: -1 };
    let bDone!: () => void;
    let aReached!: () => void;
    const bAll = new Promise<void>((resolve) => (bDone = resolve));
    const a500 = new Promise<void>((resolve) => (aReached = resolve));
    let aStarted!: () => void;
    const aRunning = new Promise<void>((resolve) => (aStarted = resolve));
    c.feeder.on('result', (o: TaskOutcome) => {
      if (o.id.startsWith('a-')) {
        done.a++;
        if (done.a === 50) aStarted();
        if (done.a === 500) aReached();
      } else if (o.id.startsWith('b-') && ++done.b === 20) {
        done.aWhenB = done.a;
        bDone();
      }
    });
    const ids = (p: string, n: number, from = 0) =>
      Array.from({ length: n }, (_, i) => ({ id: `${p}-${from + i}`, module: 'ok', group: p.toUpperCase() }));
    for (let i = 0; i < 20_000; i += 2000) await c.feeder.add(ids('a', 2000, i));
    await c.startRunner({ workers: 2, slots: 4 });
    await within(WAIT_MS, aRunning, () => `A's first 50 done (got ${done.a})`);
    const aBefore = done.a;
    await c.feeder.add(ids('b', 20));
    await within(WAIT_MS, Promise.race([bAll, a500]), () => `B's 20 or A's 500th (A ${done.a}, B ${done.b})`);
    expect(done.b).toBe(20);
    expect(done.aWhenB).toBeLessThan(500);
    // Round robin: B's 20 took about 20 of A's turns (plus what ran while the add was written).
    expect(done.aWhenB - aBefore).toBeLessThan(200);
  });
});

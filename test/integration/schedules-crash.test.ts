/**
 * A schedule `every: 1000` across a master SIGKILL and a restart 3 s later (a real master process,
 * a runner, the database): exactly one task per slot, none created before its slot, and the slots
 * missed while no master ran handled per `misfire` — `skip` adds none of them, `once` the most
 * recent one, `all` each of them — the late ones marked `backfilled`. Every task runs once.
 */
import type { TaskView } from '../../protocol/views';
import type { Runner } from '../../runner/runner';
import { startFeeder, startRunner, type TestFeeder } from '../helpers/clients';
import { freePort, spawnCli, type Proc } from '../helpers/cluster';
import { testDbName, testDbUrl } from '../helpers/db';
import { eventually, WAIT_MS } from '../helpers/wait';

const MODES = ['skip', 'once', 'all'] as const;
const dbName = testDbName('schedules-crash');
let port: number;
let url: string;
const masters: Proc[] = [];
let runner: Runner | undefined;
let feeder: TestFeeder | undefined;

async function startMasterProcess(): Promise<Proc> {
  const p = spawnCli(['master', '--port', String(port), '--mongo-url', testDbUrl(dbName)]);
  masters.push(p);
  await p.waitFor(/master listening/);
  return p;
}

/** The schedule's tasks as the master lists them, by slot. */
async function tasksOf(schedule: string): Promise<(TaskView & { slot: number })[]> {
  const res = await fetch(`${url}/api/tasks?batch=${schedule}&limit=500`);
  const { tasks } = (await res.json()) as { tasks: TaskView[] };
  return tasks
    .map((t) => ({ ...t, slot: Date.parse(t.id.slice(t.id.indexOf('@') + 1)) }))
    .sort((a, b) => a.slot - b.slot);
}

beforeAll(async () => {
  port = await freePort();
  url = `http://127.0.0.1:${port}`;
});
afterAll(async () => {
  await feeder?.close();
  await runner?.close();
  for (const m of masters) await m.kill('SIGKILL');
});

test(
  'every 1000 ms across a SIGKILL and a restart 3 s later: one task per slot, missed slots per misfire',
  async () => {
    const first = await startMasterProcess();
    runner = await startRunner(url, { reconnectDelayMs: 200, reconnectDelayMaxMs: 500 });
    feeder = await startFeeder(url);
    for (const misfire of MODES)
      await feeder.schedule({
        id: `s-${misfire}`,
        every: 1000,
        misfire,
        task: { module: 'ok', params: [misfire] },
      });
    // Two slots of each fired by the first master.
    for (const m of MODES)
      await eventually(async () => (await tasksOf(`s-${m}`)).length >= 2, { what: `2 tasks of s-${m}` });

    await first.kill('SIGKILL');
    const killed = Date.now();
    // The scenario itself: no master for 3 s.
    await new Promise((r) => setTimeout(r, 3000));
    const second = await startMasterProcess();
    const listening = Date.now();
    // Three slots of each fired by the restarted master after the ones it found missed.
    for (const m of MODES)
      await eventually(async () => (await tasksOf(`s-${m}`)).filter((t) => t.slot > listening).length >= 3, {
        what: `3 tasks of s-${m} after the restart`,
      });

    for (const m of MODES) {
      const tasks = await tasksOf(`s-${m}`);
      const slots = tasks.map((t) => t.slot);
      expect(new Set(tasks.map((t) => t.id)).size).toBe(tasks.length);
      for (const t of tasks) {
        expect(t.id).toBe(`s-${m}@${new Date(t.slot).toISOString()}`);
        expect(t.slot % 1000).toBe(0);
        expect(t.created).toBeGreaterThanOrEqual(t.slot); // never early
      }
      // The slots with no task, between the first and the last: only slots no master ran for.
      const missing: number[] = [];
      for (let t = slots[0]; t <= slots[slots.length - 1]; t += 1000) if (!slots.includes(t)) missing.push(t);
      for (const t of missing) {
        expect(t).toBeGreaterThan(killed - 1000);
        expect(t).toBeLessThan(listening);
      }
      const backfilled = tasks.filter((t) => t.backfilled);
      for (const t of backfilled) {
        expect(t.slot).toBeGreaterThan(killed - 1000);
        expect(t.slot).toBeLessThan(listening);
        expect(t.created).toBeGreaterThanOrEqual(killed + 3000);
      }
      const onTime = tasks.filter((t) => !t.backfilled);
      if (m === 'skip') {
        expect(backfilled).toEqual([]);
        expect(missing.length).toBeGreaterThanOrEqual(2);
      } else if (m === 'once') {
        expect(backfilled).toHaveLength(1);
        // The most recent missed slot: the first one after it is the restarted master's on-time one.
        const b = backfilled[0].slot;
        expect(missing.length).toBeGreaterThanOrEqual(1);
        expect(Math.max(...missing)).toBeLessThan(b);
        expect(slots).toContain(b + 1000);
        expect(onTime.find((t) => t.slot === b + 1000)).toBeDefined();
      } else {
        expect(missing).toEqual([]);
        expect(backfilled.length).toBeGreaterThanOrEqual(2);
        // Backfilled slots are consecutive, between the first master's last slot and the second's first.
        const bs = backfilled.map((t) => t.slot);
        expect(bs).toEqual(bs.map((_, i) => bs[0] + i * 1000));
      }
      // Every task runs, once.
      const outcomes = await feeder.wait(tasks.map((t) => t.id));
      expect(outcomes.map((o) => [o.state, o.attempts, o.result])).toEqual(tasks.map(() => ['done', 1, [m]]));
    }
    expect(second.output()).toMatch(/slots missed while no master ran/);
    expect(second.output()).not.toMatch(/"level":"error"/);
  },
  4 * WAIT_MS,
);

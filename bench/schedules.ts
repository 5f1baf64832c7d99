/**
 * Slot accuracy of a recurring schedule: a master and a runner process on the embedded database (or
 * MONGO_URL), one schedule `every: --every` ms for `--seconds`. For each slot, how late its task was
 * created (the master's `created`) and started (its `running` time) after the slot's time; slots
 * between the first and the last with no task (missed); and tasks that ran more than once. A task
 * is never created before its slot, so lateness is never negative (the run says if one was).
 *
 *   npm run bench:schedules -- [--seconds 60] [--every 1000]
 */
import { parseArgs } from 'node:util';
import { Feeder } from '../feeder/feeder';
import { freePort } from '../db/server';
import type { TaskDetail, TaskView } from '../protocol/views';
import { spawnTethered, type Tethered } from './peer/processes';
import { benchDatabase, masterArgs, runBench, runnerArgs } from './run';

const { values: args } = parseArgs({
  options: {
    seconds: { type: 'string', default: '60' },
    every: { type: 'string', default: '1000' },
  },
});

function pct(sorted: number[], p: number): number {
  return sorted.length === 0
    ? NaN
    : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

function summary(values: number[]): { p50: number; p99: number; max: number; min: number } {
  const s = [...values].sort((a, b) => a - b);
  return { p50: pct(s, 50), p99: pct(s, 99), max: s[s.length - 1], min: s[0] };
}

async function getJson<T>(url: string): Promise<T> {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`${url}: ${res.status} ${await res.text()}`);
  return (await res.json()) as T;
}

async function main(): Promise<void> {
  const seconds = Number(args.seconds);
  const every = Number(args.every);
  const db = await benchDatabase();
  const children: Tethered[] = [];
  const dbName = `benchsched_${Date.now()}`;
  try {
    const port = await freePort();
    const env = { ...process.env, TASKMASTER_LOG_FORMAT: 'json', TASKMASTER_LOG_LEVEL: 'warn' };
    const url = new URL(db.url);
    url.pathname = `/${dbName}`;
    const master = await spawnTethered(process.execPath, masterArgs(port, url.toString()), env);
    children.push(master);
    await master.waitFor(/master listening/, 'master');
    const masterUrl = `http://127.0.0.1:${port}`;
    const runner = await spawnTethered(process.execPath, runnerArgs(masterUrl, 1, 4), env);
    children.push(runner);
    await runner.waitFor(/runner (ready|registered|connected)/i, 'runner');

    const feeder = new Feeder({ master: masterUrl });
    await feeder.ready();
    const id = 'bench-every';
    await feeder.schedule({ id, every, task: { module: 'noop' } });
    process.stderr.write(`schedule every ${every} ms for ${seconds} s\n`);
    await new Promise((r) => setTimeout(r, seconds * 1000));
    await feeder.unschedule(id);

    // Every task of the schedule (its batch), then each one's timeline once it has run.
    const tasks: TaskView[] = [];
    let cursor: string | null = null;
    do {
      const q = new URLSearchParams({ batch: id, limit: '500', ...(cursor ? { cursor } : {}) });
      const page: { tasks: TaskView[]; next: string | null } = await getJson(`${masterUrl}/api/tasks?${q}`);
      tasks.push(...page.tasks);
      cursor = page.next;
    } while (cursor);
    await feeder.wait(tasks.map((t) => t.id));
    const created: number[] = [];
    const started: number[] = [];
    let ranTwice = 0;
    const slots: number[] = [];
    for (const t of tasks) {
      const slot = Date.parse(t.id.slice(t.id.indexOf('@') + 1));
      slots.push(slot);
      created.push(t.created - slot);
      const { task } = await getJson<{ task: TaskDetail }>(
        `${masterUrl}/api/tasks/${encodeURIComponent(t.id)}`,
      );
      const runs = task.timeline.filter((e) => e.state === 'running');
      if (runs.length > 1 || task.attempts > 1) ranTwice++;
      if (runs[0]) started.push(runs[0].at - slot);
    }
    slots.sort((a, b) => a - b);
    let missed = 0;
    for (let i = 1; i < slots.length; i++) missed += Math.round((slots[i] - slots[i - 1]) / every) - 1;
    const c = summary(created);
    const s = summary(started);
    process.stdout.write(
      `${JSON.stringify({
        every,
        seconds,
        slots: slots.length,
        missed,
        doubled: tasks.length - new Set(tasks.map((t) => t.id)).size,
        ranMoreThanOnce: ranTwice,
        createdLateMs: { p50: c.p50, p99: c.p99, max: c.max },
        earliestCreatedMs: c.min,
        startedLateMs: { p50: s.p50, p99: s.p99, max: s.max },
        database: db.kind,
      })}\n`,
    );
    await feeder.close();
  } finally {
    await Promise.all(children.map((c) => c.stop()));
    await db.stop();
  }
}

runBench(main);

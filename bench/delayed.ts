/**
 * Lateness of delayed tasks: a master and R runner processes on the embedded database (or
 * MONGO_URL); one feeder adds `--tasks` tasks with `runAt` spread evenly over `--spread` seconds,
 * the first `--lead` seconds after the add starts. Each task (bench/tasks/clock.js) returns when it
 * started, by the wall clock the master schedules by; a task's lateness is that start minus its
 * `runAt`. Prints p50/p99/max lateness, how many started early (must be 0), how long the add took,
 * and the master's share of the lateness: its assignment time (`assigned.when` in `tasks`) minus
 * `runAt`; the rest is the durable write of the assignment, the trip to the runner and the start of
 * the task in a child process.
 *
 *   npm run bench:delayed -- [--tasks 10000] [--spread 60] [--lead 10] [--runners 2] [--workers 2]
 */
import { parseArgs } from 'node:util';
import mongoose from 'mongoose';
import { Feeder } from '../feeder/feeder';
import { freePort } from '../db/server';
import type { TaskOutcome } from '../protocol/schemas';
import { spawnTethered, type Tethered } from './peer/processes';
import { benchDatabase, masterArgs, runBench, runnerArgs } from './run';

const { values: args } = parseArgs({
  options: {
    tasks: { type: 'string', default: '10000' },
    spread: { type: 'string', default: '60' },
    lead: { type: 'string', default: '10' },
    runners: { type: 'string', default: '2' },
    workers: { type: 'string', default: '2' },
  },
});

function pct(sorted: number[], p: number): number {
  return sorted.length === 0
    ? NaN
    : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

async function main(): Promise<void> {
  const n = Number(args.tasks);
  const spreadMs = Number(args.spread) * 1000;
  const leadMs = Number(args.lead) * 1000;
  const db = await benchDatabase();
  const children: Tethered[] = [];
  try {
    const port = await freePort();
    const env = { ...process.env, TASKMASTER_LOG_FORMAT: 'json', TASKMASTER_LOG_LEVEL: 'warn' };
    const url = new URL(db.url);
    const dbName = `benchdelayed_${Date.now()}`;
    url.pathname = `/${dbName}`;
    const master = await spawnTethered(process.execPath, masterArgs(port, url.toString()), env);
    children.push(master);
    await master.waitFor(/master listening/, 'master');
    const masterUrl = `http://127.0.0.1:${port}`;
    for (let i = 0; i < Number(args.runners); i++) {
      const r = await spawnTethered(process.execPath, runnerArgs(masterUrl, Number(args.workers), 64), env);
      children.push(r);
      await r.waitFor(/runner (ready|registered|connected)/i, `runner ${i}`);
    }
    const feeder = new Feeder({ master: masterUrl });
    await feeder.ready();

    const t0 = Date.now();
    const from = t0 + leadMs;
    const runAt = new Map<string, number>();
    const tasks = Array.from({ length: n }, (_, i) => {
      const at = from + Math.floor((i * spreadMs) / n);
      runAt.set(`d-${i}`, at);
      return { id: `d-${i}`, module: 'clock', runAt: at };
    });
    // Shuffled, so the order of the add says nothing of the order of the times.
    for (let i = tasks.length - 1; i > 0; i--) {
      const j = Math.floor(Math.random() * (i + 1));
      [tasks[i], tasks[j]] = [tasks[j], tasks[i]];
    }
    await feeder.add(tasks, { batch: 'delayed' });
    const addMs = Date.now() - t0;
    if (Date.now() > from) process.stderr.write(`warning: the add took ${addMs} ms, past --lead\n`);
    const outcomes: TaskOutcome[] = await feeder.wait(tasks.map((t) => t.id));
    const late: number[] = [];
    let early = 0;
    let failed = 0;
    for (const o of outcomes) {
      if (o.state !== 'done') {
        failed++;
        continue;
      }
      const d = (o.result as number) - (runAt.get(o.id) as number);
      if (d < 0) early++;
      late.push(d);
    }
    late.sort((a, b) => a - b);
    // The master's share: when it assigned each task, as its document says.
    const conn = await mongoose.createConnection(db.url, { dbName }).asPromise();
    const assigned: number[] = [];
    try {
      const docs = await conn
        .collection<{ _id: string; assigned?: { when?: number } }>('tasks')
        .find({ batch: 'delayed' }, { projection: { 'assigned.when': 1 } })
        .toArray();
      for (const d of docs)
        if (d.assigned?.when) assigned.push(d.assigned.when - (runAt.get(d._id) as number));
    } finally {
      await conn.close();
    }
    assigned.sort((a, b) => a - b);
    process.stdout.write(
      `${JSON.stringify({
        tasks: n,
        spreadSeconds: spreadMs / 1000,
        tasksPerSecondDue: Math.round(n / (spreadMs / 1000)),
        runners: Number(args.runners),
        workersPerRunner: Number(args.workers),
        addMs,
        latenessP50Ms: pct(late, 50),
        latenessP99Ms: pct(late, 99),
        latenessMaxMs: late[late.length - 1],
        early,
        failed,
        assignLatenessP50Ms: pct(assigned, 50),
        assignLatenessP99Ms: pct(assigned, 99),
        assignLatenessMaxMs: assigned[assigned.length - 1],
        assignedEarly: assigned.filter((d) => d < 0).length,
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

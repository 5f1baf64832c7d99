/**
 * The taskmaster half of the peer benchmark: a master process (`bin/taskmaster.js master`) on the
 * database the run shares, a fresh database name per measurement, runner processes with the
 * bench/tasks modules, and an in-process Feeder, as in bench/throughput.ts. CPU counts the master,
 * the database server (when it was started here), the runners, their children and this process
 * (bench/peer/cpu.ts).
 */
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import mongoose from 'mongoose';
import { Feeder } from '../../feeder/feeder';
import { freePort, type Database, type EmbeddedDatabase } from '../../db/server';
import type { TaskOutcome } from '../../protocol/schemas';
import {
  deadline,
  latencyFigures,
  openLoop,
  round2,
  significant,
  type Figures,
  type Workload,
} from './measure';
import { CpuMeter } from './cpu';
import { rssMb, spawnTethered, type Tethered } from './processes';
import { masterArgs, runnerArgs } from '../run';

const ENV = { ...process.env, TASKMASTER_LOG_FORMAT: 'json', TASKMASTER_LOG_LEVEL: 'warn' };

interface Master {
  url: string;
  pid: number;
  feeder: Feeder;
  /** Starts `count` runner processes at once and resolves when all are registered. */
  startRunners(count: number): Promise<void>;
  /**
   * Counts the master, the database server and this process from now, the runners started so far
   * and each runner started later from its registration, with their children.
   */
  meter(): CpuMeter;
  storeFigures(
    tasks: number,
  ): Promise<Pick<Figures, 'dbCommandsPerTask' | 'dbDocumentsPerTask' | 'runnerMessagesPerTask'>>;
}

let measurement = 0;

/** Runs `fn` against a fresh master on a fresh database of `db`; stops everything after. */
async function withMaster<T>(db: Database, w: Workload, fn: (m: Master) => Promise<T>): Promise<T> {
  const url = new URL(db.url);
  url.pathname = `/peer_${process.pid}_${++measurement}`;
  const port = await freePort();
  const started: Tethered[] = [];
  let feeder: Feeder | undefined;
  let cpu: CpuMeter | undefined;
  const runnerPids: number[] = [];
  try {
    const prof = w.cpuProfDir ? ['--cpu-prof', '--cpu-prof-dir', w.cpuProfDir] : [];
    const master = await spawnTethered(process.execPath, [...prof, ...masterArgs(port, url.toString())], ENV);
    started.push(master);
    await master.waitFor(/master listening/, 'master');
    const masterUrl = `http://127.0.0.1:${port}`;
    feeder = new Feeder({ master: masterUrl });
    await feeder.ready();
    const startRunners = async (count: number) => {
      const runners = await Promise.all(
        Array.from({ length: count }, () =>
          spawnTethered(
            process.execPath,
            runnerArgs(masterUrl, 1, w.slots, ['--isolation', w.isolation ?? 'process']),
            ENV,
          ),
        ),
      );
      started.push(...runners);
      await Promise.all(
        runners.map((r, i) => r.waitFor(/runner (ready|registered|connected)/i, `runner ${i}`)),
      );
      for (const r of runners) cpu?.watch(r.pid, 'workers', true);
      runnerPids.push(...runners.map((r) => r.pid));
    };
    const meter = () => {
      cpu = new CpuMeter();
      cpu.watch(master.pid, 'master');
      cpu.watch((db as Partial<EmbeddedDatabase>).pid, 'database');
      for (const pid of runnerPids) cpu.watch(pid, 'workers', true);
      return cpu;
    };
    // Counted once the writer and the folder are idle, so writes deferred past the last result count.
    const storeFigures = async (tasks: number) => {
      for (const settleBy = Date.now() + 10_000; ;) {
        const { store, wire } = (await (await fetch(`${masterUrl}/api/status`)).json()) as {
          store?: { commands: number; documents: number; writeBacklog?: number; foldBacklog?: number } | null;
          wire?: { in: Record<string, number>; out: Record<string, number> };
        };
        if (!store) return {};
        const idle = !store.writeBacklog && !store.foldBacklog;
        if (idle || Date.now() > settleBy) {
          return {
            dbCommandsPerTask: significant(store.commands / tasks),
            dbDocumentsPerTask: significant(store.documents / tasks),
            ...(wire ? { runnerMessagesPerTask: significant(messages(wire) / tasks) } : {}),
          };
        }
        await sleep(50);
      }
    };
    return await fn({ url: masterUrl, pid: master.pid, feeder, startRunners, meter, storeFigures });
  } finally {
    await feeder?.close().catch(() => {});
    // Runners first, so the master does not spend the shutdown requeueing their tasks.
    for (const p of started.slice(1).reverse()) await p.stop(2_000);
    await started[0]?.stop(10_000);
    await dropDatabase(url.toString());
  }
}

/** Messages between the master and its runners, both ways (`/api/status` wire), less the hellos and module lists. */
function messages(wire: { in: Record<string, number>; out: Record<string, number> }): number {
  let n = 0;
  for (const counts of [wire.in, wire.out])
    for (const [event, count] of Object.entries(counts))
      if (event !== 'runner:hello' && event !== 'runner:modules') n += count;
  return n;
}

/** Leaves nothing behind on a server the run does not own (MONGO_URL). */
async function dropDatabase(url: string): Promise<void> {
  const client = new mongoose.mongo.MongoClient(url, { serverSelectionTimeoutMS: 5_000 });
  try {
    await client.connect();
    await client.db().dropDatabase();
  } catch (err) {
    process.stderr.write(`could not drop ${url}: ${String(err)}\n`);
  } finally {
    await client.close().catch(() => {});
  }
}

/** Adds `n` no-op tasks in chunks; resolves when all are acknowledged. */
async function addChunks(feeder: Feeder, n: number, chunk: number): Promise<void> {
  for (let i = 0; i < n; i += chunk) {
    const size = Math.min(chunk, n - i);
    await feeder.add(Array.from({ length: size }, () => ({ module: 'noop', params: [] })));
  }
}

/** `w.tasks` queued with no runner, then `w.workers` runners started at once drain them. */
export function drain(db: Database, w: Workload): Promise<Figures> {
  return withMaster(db, w, async (m) => {
    const cpu = m.meter();
    await addChunks(m.feeder, w.tasks, w.chunk);
    let first = 0;
    let last = 0;
    let seen = 0;
    let failed = 0;
    const all = new Promise<void>((resolve) => {
      m.feeder.on('result', (o: TaskOutcome) => {
        last = performance.now();
        first ||= last;
        if (o.state !== 'done') failed++;
        if (++seen === w.tasks) resolve();
      });
    });
    await m.startRunners(w.workers);
    await deadline(all, w.timeoutMs, `taskmaster drain: ${w.tasks} results did not all arrive`);
    const seconds = (last - first) / 1000;
    const store = await m.storeFigures(w.tasks);
    return {
      jobsPerSecond: Math.round((w.tasks - 1) / seconds),
      seconds: round2(seconds),
      failed,
      ...store,
      ...cpu.perTask(w.tasks),
    };
  });
}

/** `w.adds` single adds at `w.rate`/s, open loop, with the runners waiting; add → result latency. */
export function light(db: Database, w: Workload): Promise<Figures> {
  return withMaster(db, w, async (m) => {
    await m.startRunners(w.workers);
    const cpu = m.meter();
    const dueAt = new Map<string, number>();
    // A result can arrive before its add's reply: keep arrivals and pair them at the end.
    const arrivals = new Map<string, number>();
    let failed = 0;
    const all = new Promise<void>((resolve) => {
      m.feeder.on('result', (o: TaskOutcome) => {
        arrivals.set(o.id, performance.now());
        if (o.state !== 'done') failed++;
        if (arrivals.size === w.adds) resolve();
      });
    });
    const runId = `${process.pid}-${measurement}`;
    const sentPerSecond = await openLoop(w.adds, w.rate, async (i, due) => {
      const id = w.feederIds ? `light-${runId}-${i}` : undefined;
      if (id) dueAt.set(id, due);
      const [ref] = await m.feeder.add([{ id, module: 'noop', params: [] }]);
      dueAt.set(ref.id, due);
    });
    await deadline(all, w.timeoutMs, `taskmaster light: ${w.adds} results did not all arrive`);
    const latencies = [...arrivals].map(([id, at]) => at - (dueAt.get(id) ?? NaN));
    const store = await m.storeFigures(w.adds);
    return { sentPerSecond, ...latencyFigures(latencies), failed, ...store, ...cpu.perTask(w.adds) };
  });
}

/** `w.scale` tasks added in chunks with nobody working: adds/s and the master's RSS. */
export function scale(db: Database, w: Workload): Promise<Figures> {
  return withMaster(db, w, async (m) => {
    const cpu = m.meter();
    const start = performance.now();
    await deadline(addChunks(m.feeder, w.scale, w.chunk), w.timeoutMs, `taskmaster scale: ${w.scale} adds`);
    const seconds = (performance.now() - start) / 1000;
    const rss = rssMb(m.pid);
    return {
      addsPerSecond: Math.round(w.scale / seconds),
      seconds: round2(seconds),
      rssMb: rss.rss,
      peakRssMb: rss.peak,
      ...(await m.storeFigures(w.scale)),
      ...cpu.perTask(w.scale),
    };
  });
}

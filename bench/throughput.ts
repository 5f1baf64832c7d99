/**
 * End-to-end benchmark: N tasks through a master and R runner processes on the embedded database
 * (or MONGO_URL). Prints tasks/s, p50/p99 latency from add to result, and the master's peak RSS.
 *
 *   npm run bench -- [--tasks 10000] [--runners 2] [--workers 1] [--slots 32]
 *                    [--module noop|primes] [--param 20000] [--answer-threshold 1] [--dashboard]
 *                    [--chunk 1000] [--dedup] [--dedup-ttl MS] [--isolation process|thread]
 *                    [--insert-delay MS] [--cpu-prof DIR]
 *
 * `--dashboard` keeps one client connected to the master's /dashboard namespace throughout (what an
 * open dashboard costs the master), and reports the events it received. `--dedup` gives every task a
 * dedup key of its own (`--dedup-ttl`: with that ttl), so each is added, and the keys' cost shows.
 * `addSeconds` is the time the adds took (their calls, to their replies); `--chunk` tasks per add.
 * `wirePerTask` is the messages between master and runners per task, by direction and event (the
 * master's `/api/status`). `--strace` counts the system calls of the master and of the first runner
 * (its own threads, not its children) from the first add to the last result with `strace -c -f`
 * (`STRACE` overrides /usr/bin/strace), and prints them per task: all, and the socket writes.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import { parseArgs } from 'node:util';
import { io } from 'socket.io-client';
import { Feeder } from '../feeder/feeder';
import { freePort, type EmbeddedDatabase } from '../db/server';
import type { TaskOutcome } from '../protocol/schemas';
import { CpuMeter } from './peer/cpu';
import { benchDatabase, masterArgs, runBench, runnerArgs } from './run';

const { values: args } = parseArgs({
  options: {
    tasks: { type: 'string', default: '10000' },
    runners: { type: 'string', default: '2' },
    workers: { type: 'string', default: '1' },
    isolation: { type: 'string', default: 'process' },
    slots: { type: 'string', default: '32' },
    module: { type: 'string', default: 'noop' },
    param: { type: 'string', default: '20000' },
    'answer-threshold': { type: 'string', default: '1' },
    chunk: { type: 'string', default: '1000' },
    'distribute-delay': { type: 'string', default: '0' },
    'insert-delay': { type: 'string' },
    'cpu-prof': { type: 'string' },
    dashboard: { type: 'boolean', default: false },
    dedup: { type: 'boolean', default: false },
    'dedup-ttl': { type: 'string' },
    strace: { type: 'boolean', default: false },
  },
});

function waitForLine(
  child: ChildProcess,
  pattern: RegExp,
  what: string,
  timeoutMs = 60_000,
): Promise<string> {
  return new Promise((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(
      () => reject(new Error(`${what} did not start within ${timeoutMs} ms:\n${buf}`)),
      timeoutMs,
    );
    const onData = (d: Buffer) => {
      buf += d.toString();
      const m = pattern.exec(buf);
      if (m) {
        clearTimeout(timer);
        child.stdout?.off('data', onData);
        child.stderr?.off('data', onData);
        resolve(m[0]);
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('exit', (code) => reject(new Error(`${what} exited with ${code}:\n${buf}`)));
  });
}

/** Counts one process's system calls until `stop()`, which resolves to the calls by name. */
async function traceCalls(pid: number): Promise<{ stop(): Promise<Record<string, number>> }> {
  const file = `${os.tmpdir()}/taskmaster-strace-${pid}-${Date.now()}.txt`;
  const st = spawn(process.env.STRACE ?? '/usr/bin/strace', ['-c', '-f', '-p', String(pid), '-o', file], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  await waitForLine(st, /attached/, `strace of ${pid}`, 10_000);
  return {
    stop: async () => {
      const exited = new Promise((r) => st.once('exit', r));
      st.kill('SIGINT');
      await exited;
      const calls: Record<string, number> = {};
      // Rows: % time, seconds, usecs/call, calls, [errors,] syscall.
      for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
        const m = /^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?([a-z_0-9]+)\s*$/.exec(line);
        if (m && m[2] !== 'total') calls[m[2]] = Number(m[1]);
      }
      fs.rmSync(file, { force: true });
      return calls;
    },
  };
}

/** All calls and the socket writes, per task. */
function perTask(calls: Record<string, number>, n: number): { calls: number; writes: number } {
  const sum = (names: string[]) => names.reduce((a, k) => a + (calls[k] ?? 0), 0);
  return {
    calls: Number((sum(Object.keys(calls)) / n).toFixed(2)),
    writes: Number((sum(['write', 'writev', 'sendmsg', 'sendto']) / n).toFixed(2)),
  };
}

function peakRssMb(pid: number): number {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const m = /VmHWM:\s+(\d+) kB/.exec(status);
  return m ? Math.round(Number(m[1]) / 1024) : NaN;
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

async function main(): Promise<void> {
  const n = Number(args.tasks);
  const db = await benchDatabase();
  const port = await freePort();
  const env = { ...process.env, TASKMASTER_LOG_FORMAT: 'json', TASKMASTER_LOG_LEVEL: 'warn' };
  const children: ChildProcess[] = [];
  const stop = () => children.forEach((c) => c.exitCode === null && c.kill('SIGKILL'));
  process.on('exit', stop);
  try {
    const dbName = `bench_${Date.now()}`;
    const url = new URL(db.url);
    url.pathname = `/${dbName}`;
    // --cpu-prof DIR: the master writes a V8 CPU profile there when it exits (read it in Chrome's DevTools).
    const prof = args['cpu-prof'] ? ['--cpu-prof', '--cpu-prof-dir', args['cpu-prof']] : [];
    const master = spawn(
      process.execPath,
      [
        ...prof,
        ...masterArgs(port, url.toString(), [
          '--distribute-delay',
          String(args['distribute-delay']),
          ...(args['insert-delay'] ? ['--insert-delay', args['insert-delay']] : []),
        ]),
      ],
      {
        env,
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    children.push(master);
    await waitForLine(master, /master listening/, 'master');
    const masterUrl = `http://127.0.0.1:${port}`;
    const runners: number[] = [];
    for (let i = 0; i < Number(args.runners); i++) {
      const r = spawn(
        process.execPath,
        runnerArgs(masterUrl, Number(args.workers), Number(args.slots), [
          '--answer-threshold',
          String(args['answer-threshold']),
          '--isolation',
          String(args.isolation),
        ]),
        { env, stdio: ['ignore', 'pipe', 'pipe'] },
      );
      children.push(r);
      runners.push(r.pid as number);
      await waitForLine(r, /runner (ready|registered|connected)/i, `runner ${i}`);
    }

    const dash = { snapshots: 0, ticks: 0, tasks: 0 };
    const dashboard = args.dashboard
      ? io(`${masterUrl}/dashboard`, { transports: ['websocket'], reconnection: false })
      : null;
    if (dashboard) {
      dashboard.on('dash:snapshot', () => dash.snapshots++);
      dashboard.on('dash:tick', () => dash.ticks++);
      dashboard.on('dash:task', () => dash.tasks++);
      await new Promise<void>((resolve, reject) => {
        dashboard.once('dash:snapshot', () => resolve());
        dashboard.once('connect_error', reject);
      });
    }
    const feeder = new Feeder({ master: masterUrl });
    await feeder.ready();
    const addedAt = new Map<string, number>();
    // An outcome can in principle arrive before its add's reply: record arrivals, pair them later.
    const arrivals = new Map<string, number>();
    let failed = 0;
    const all = new Promise<void>((resolve) => {
      feeder.on('result', (o: TaskOutcome) => {
        arrivals.set(o.id, Date.now());
        if (o.state !== 'done') failed++;
        if (arrivals.size === n) resolve();
      });
    });
    const params = args.module === 'primes' ? [Number(args.param)] : [];
    const ttl = args['dedup-ttl'] === undefined ? undefined : Number(args['dedup-ttl']);
    const dedup = (i: number) =>
      args.dedup ? { dedup: { key: `bench-${i}`, ...(ttl === undefined ? {} : { ttl }) } } : {};
    // CPU from the first add to the last write, per process (bench/peer/cpu.ts, as bench:peer counts it).
    const meter = new CpuMeter();
    meter.watch(master.pid, 'master');
    meter.watch((db as Partial<EmbeddedDatabase>).pid, 'database');
    for (const pid of runners) meter.watch(pid, 'workers', true);
    const traces = args.strace
      ? await Promise.all([traceCalls(master.pid as number), traceCalls(children[1].pid as number)])
      : [];
    const started = Date.now();
    const chunk = Number(args.chunk);
    let addMs = 0;
    for (let i = 0; i < n; i += chunk) {
      const size = Math.min(chunk, n - i);
      const calledAt = Date.now();
      const refs = await feeder.add(
        Array.from({ length: size }, (_, k) => ({ module: String(args.module), params, ...dedup(i + k) })),
      );
      addMs += Date.now() - calledAt;
      for (const r of refs) if (!addedAt.has(r.id)) addedAt.set(r.id, calledAt);
    }
    await all;
    const elapsed = (Date.now() - started) / 1000;
    // The database's share includes writing the last outcomes into `tasks`: wait for the folder.
    await settled(masterUrl);
    const { cpuUsPerTask } = meter.perTask(n);
    const [masterCalls, runnerCalls] = await Promise.all(traces.map((t) => t.stop()));
    const latencies = [...arrivals].map(([id, at]) => at - (addedAt.get(id) ?? at)).sort((a, b) => a - b);
    const rss = peakRssMb(master.pid as number);
    const status = (await (await fetch(`${masterUrl}/api/status`)).json()) as {
      store?: { commands: number; documents: number };
      wire?: { in: Record<string, number>; out: Record<string, number> };
    };
    const wirePerTask = (counts: Record<string, number> = {}) =>
      Object.fromEntries(Object.entries(counts).map(([k, v]) => [k, Number((v / n).toFixed(3))]));
    const line = {
      tasks: n,
      runners: Number(args.runners),
      workersPerRunner: Number(args.workers),
      isolation: args.isolation,
      slotsPerRunner: Number(args.slots),
      module: args.module,
      answerThreshold: Number(args['answer-threshold']),
      distributeDelayMs: Number(args['distribute-delay']),
      ...(args['insert-delay'] ? { insertDelayMs: Number(args['insert-delay']) } : {}),
      chunk,
      ...(args.dedup ? { dedup: true, dedupTtlMs: ttl ?? null } : {}),
      database: db.kind,
      cpus: os.cpus().length,
      seconds: Number(elapsed.toFixed(2)),
      addSeconds: Number((addMs / 1000).toFixed(2)),
      tasksPerSecond: Math.round(n / elapsed),
      p50Ms: percentile(latencies, 50),
      p99Ms: percentile(latencies, 99),
      masterPeakRssMb: rss,
      dbCommandsPerTask: status.store ? Number((status.store.commands / n).toFixed(2)) : null,
      dbDocumentsPerTask: status.store ? Number((status.store.documents / n).toFixed(2)) : null,
      cpuUsPerTask,
      wirePerTask: { in: wirePerTask(status.wire?.in), out: wirePerTask(status.wire?.out) },
      ...(masterCalls
        ? { syscallsPerTask: { master: perTask(masterCalls, n), runner: perTask(runnerCalls, n) } }
        : {}),
      failed,
      ...(dashboard ? { dashboard: dash } : {}),
    };
    process.stdout.write(`${JSON.stringify(line)}\n`);
    await feeder.close();
    dashboard?.close();
  } finally {
    // A profiled master writes its profile as it exits: stop it gently (bounded) before the rest.
    const master = children[0];
    if (args['cpu-prof'] && master && master.exitCode === null) {
      const exited = new Promise((resolve) => master.once('exit', resolve));
      master.kill('SIGTERM');
      await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 15_000))]);
    }
    stop();
    await db.stop();
  }
}

runBench(main);

/** Resolves once the master's store has nothing left to write (the folder included), or after 60 s. */
async function settled(masterUrl: string): Promise<void> {
  const until = Date.now() + 60_000;
  while (Date.now() < until) {
    const status = (await (await fetch(`${masterUrl}/api/status`)).json()) as {
      store?: { writeBacklog: number; foldBacklog: number };
    };
    if (!status.store || (status.store.writeBacklog === 0 && status.store.foldBacklog === 0)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * taskmaster and BullMQ side by side, in one run, on the same workloads, alternating the order of
 * the systems from round to round. The systems (`--systems`, all by default):
 *
 *   taskmaster         master + runner processes (one child process each) on the embedded database,
 *                      or MONGO_URL
 *   bullmq             BullMQ, the processor a function inside each worker process, Redis without
 *                      persistence
 *   bullmq-aof         the same on Redis with AOF fsync'd on every write
 *   bullmq-sandboxed   BullMQ's sandbox: the processor a file (bench/tasks/noop.js, the module the
 *                      runners run) in child processes, Redis without persistence
 *   bullmq-threads     the sandbox with `useWorkerThreads: true`
 *   taskmaster-thread  taskmaster with its runners' `--isolation thread` (only when named)
 *
 * Every worker process (runner) runs `--slots` tasks at once, so `--workers` × `--slots` in all. The
 * sandboxed systems run no `scale` (no worker takes part in it: it is `bullmq`'s).
 *
 * Prints one JSON line per measurement as it is taken, then per workload a table of each system per
 * round with the ratios taskmaster ÷ each BullMQ and the medians, and a table of the CPU each task
 * cost each process (µs, medians of the rounds; JSON: `cpuUsPerTask`): the master, the database
 * (FerretDB / Redis), the workers (runners / BullMQ worker processes), their children (BullMQ's
 * threads count in their worker process), the feeder (this process: the Feeder / BullMQ's Queue and
 * QueueEvents). It is read from /proc before and after each measurement (bench/peer/cpu.ts): from the
 * first add to the last result (and, for taskmaster, the store's deferred writes), processes started
 * during it counted from when they are ready, their children from their start.
 *
 *   npm run bench:peer -- [--rounds 3] [--mode drain,light,scale] [--systems taskmaster,bullmq,...]
 *                         [--tasks 50000] [--workers 2] [--slots 32] [--rate 500] [--adds 1000]
 *                         [--feeder-ids] [--scale 100000] [--chunk 1000] [--timeout 300]
 *                         [--cpu-prof DIR]
 *
 * `--cpu-prof DIR`: each taskmaster master writes a V8 CPU profile of its measurement there as it
 * exits (open it in Chrome's DevTools).
 *
 * Redis is the machine's `redis-server` (REDIS_SERVER overrides), started per measurement on a free
 * 127.0.0.1 port with its own temporary directory and stopped after it. Syscalls per task of
 * taskmaster's processes on a short drain: `python3 bench/peer/strace-drain.py 10000 /tmp/strace`.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import type { Database } from '../db/server';
import * as bull from './peer/bullmq-side';
import type { BullSetup } from './peer/bullmq-side';
import { ALL_SYSTEMS, SYSTEMS, type Figures, type Mode, type System, type Workload } from './peer/measure';
import { REDIS_SERVER } from './peer/redis';
import { printTables, type Measurement } from './peer/report';
import * as tm from './peer/taskmaster-side';
import { benchDatabase, runBench } from './run';

const MODES: readonly Mode[] = ['drain', 'light', 'scale'];

const { values: args } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    mode: { type: 'string', multiple: true },
    systems: { type: 'string', multiple: true },
    tasks: { type: 'string', default: '50000' },
    workers: { type: 'string', default: '2' },
    slots: { type: 'string', default: '32' },
    rate: { type: 'string', default: '500' },
    adds: { type: 'string', default: '1000' },
    'feeder-ids': { type: 'boolean', default: false },
    scale: { type: 'string', default: '100000' },
    chunk: { type: 'string', default: '1000' },
    timeout: { type: 'string', default: '300' },
    'cpu-prof': { type: 'string' },
  },
});

/** `--mode a,b --mode c` → [a, b, c], each checked against `allowed`; all of them when absent. */
function list<T extends string>(given: string[] | undefined, allowed: readonly T[], flag: string): T[] {
  if (!given) return [...allowed];
  const items = given.flatMap((g) => g.split(',')).map((s) => s.trim());
  for (const item of items) {
    if (!allowed.includes(item as T))
      throw new Error(`--${flag}: "${item}" is not one of ${allowed.join(', ')}`);
  }
  return allowed.filter((a) => items.includes(a));
}

function positive(flag: keyof typeof args): number {
  const n = Number(args[flag]);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${flag} must be a positive integer`);
  return n;
}

const BULL: Record<Exclude<System, 'taskmaster' | 'taskmaster-thread'>, BullSetup> = {
  bullmq: { persistence: 'none', processor: 'inline' },
  'bullmq-aof': { persistence: 'always', processor: 'inline' },
  'bullmq-sandboxed': { persistence: 'none', processor: 'process' },
  'bullmq-threads': { persistence: 'none', processor: 'thread' },
};

/** Whether `mode` means anything on `system`: a scale has no workers, so the sandbox changes nothing. */
const applies = (system: System, mode: Mode): boolean =>
  mode !== 'scale' ||
  system === 'taskmaster' ||
  (system !== 'taskmaster-thread' && BULL[system].processor === 'inline');

function measure(system: System, mode: Mode, db: Database | undefined, w: Workload): Promise<Figures> {
  if (system === 'taskmaster') return tm[mode](db as Database, w);
  if (system === 'taskmaster-thread') return tm[mode](db as Database, { ...w, isolation: 'thread' });
  return bull[mode](BULL[system], w);
}

async function main(): Promise<void> {
  const rounds = positive('rounds');
  const modes = list(args.mode, MODES, 'mode');
  const systems = args.systems ? list(args.systems, ALL_SYSTEMS, 'systems') : [...SYSTEMS];
  const w: Workload = {
    tasks: positive('tasks'),
    workers: positive('workers'),
    slots: positive('slots'),
    rate: positive('rate'),
    adds: positive('adds'),
    feederIds: args['feeder-ids'] ?? false,
    scale: positive('scale'),
    chunk: positive('chunk'),
    timeoutMs: positive('timeout') * 1000,
    cpuProfDir: args['cpu-prof'] && path.resolve(args['cpu-prof']),
  };
  const redisVersion = /v=([\d.]+)/.exec(execFileSync(REDIS_SERVER, ['--version']).toString())?.[1];
  const bullPackage = path.join(__dirname, '..', 'node_modules', 'bullmq', 'package.json');
  const bullVersion = (JSON.parse(fs.readFileSync(bullPackage, 'utf8')) as { version: string }).version;
  // On Ctrl-C or SIGTERM: the exit handlers kill every process started here, then the files go.
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => process.exit(130));
  let db: Database | undefined;
  try {
    if (systems.includes('taskmaster')) {
      db = await benchDatabase();
    }
    const setup = {
      setup: {
        cpus: os.cpus().length,
        cpuModel: os.cpus()[0]?.model,
        node: process.version,
        database: db?.kind,
        bullmq: bullVersion,
        redis: redisVersion,
        ...w,
      },
    };
    process.stdout.write(`${JSON.stringify(setup)}\n`);
    const results: Measurement[] = [];
    for (let round = 1; round <= rounds; round++) {
      // Rotate the order each round, so no system always runs first (or right after another).
      const order = systems.map((_, i) => systems[(i + round - 1) % systems.length]);
      for (const mode of modes) {
        for (const system of order) {
          if (!applies(system, mode)) continue;
          process.stderr.write(`round ${round}/${rounds}: ${mode} on ${system}\n`);
          let m: Measurement;
          try {
            m = { round, mode, system, ...(await measure(system, mode, db, w)) };
          } catch (err) {
            m = { round, mode, system, error: err instanceof Error ? err.message : String(err) };
          }
          results.push(m);
          process.stdout.write(`${JSON.stringify(m)}\n`);
        }
      }
    }
    process.stdout.write('\n');
    printTables(results, modes, systems, w, (line) => process.stdout.write(`${line}\n`));
    const failed = results.filter((r) => r.error);
    if (failed.length > 0) throw new Error(`${failed.length} measurement(s) failed; see "error" above`);
  } finally {
    await db?.stop();
  }
}

runBench(main);

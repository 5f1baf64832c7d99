/** What the peer benchmark's workloads share: their parameters, their results, and open-loop timing. */
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import type { CpuBudget } from './cpu';

export type Mode = 'drain' | 'light' | 'scale';
/**
 * `bullmq`: the processor runs inside the worker process; `bullmq-aof`: the same on Redis with AOF
 * fsync'd on every write; `bullmq-sandboxed`: the processor a file run in child processes (BullMQ's
 * sandbox, what a taskmaster runner does); `bullmq-threads`: the sandbox in worker threads.
 */
export type System =
  'taskmaster' | 'taskmaster-thread' | 'bullmq' | 'bullmq-aof' | 'bullmq-sandboxed' | 'bullmq-threads';
/** What runs when `--systems` is not given. */
export const SYSTEMS: readonly System[] = [
  'taskmaster',
  'bullmq',
  'bullmq-aof',
  'bullmq-sandboxed',
  'bullmq-threads',
];
/** Also accepted by `--systems`: `taskmaster-thread`, taskmaster with its runners' `--isolation thread`. */
export const ALL_SYSTEMS: readonly System[] = [
  ...SYSTEMS.slice(0, 1),
  'taskmaster-thread',
  ...SYSTEMS.slice(1),
];

export interface Workload {
  /** taskmaster: what a runner's worker is (its `--isolation`). Default process. */
  isolation?: 'process' | 'thread';
  /** taskmaster: the master writes a V8 CPU profile of each measurement into this folder as it exits. */
  cpuProfDir?: string;
  /** drain: tasks queued before the workers start. */
  tasks: number;
  /** drain and light: worker processes (runners for taskmaster). */
  workers: number;
  /** Tasks run at once per worker process: runner slots, BullMQ worker concurrency. */
  slots: number;
  /** light: single adds per second, open loop. */
  rate: number;
  /** light: how many single adds. */
  adds: number;
  /** light, taskmaster: ids chosen by the feeder instead of the master. */
  feederIds: boolean;
  /** scale: tasks queued with nobody working. */
  scale: number;
  /** drain and scale: tasks per add. */
  chunk: number;
  /** Longest a single measurement may take before it is abandoned. */
  timeoutMs: number;
}

/** One measurement; printed as one JSON line. Figures absent from a mode are left out. */
export interface Figures {
  /** drain: completions per second, from the first completion to the last. */
  jobsPerSecond?: number;
  /** light: adds per second actually sent. */
  sentPerSecond?: number;
  /** light: add → result at the producer, from the moment the add was due. */
  p50Ms?: number;
  p99Ms?: number;
  maxMs?: number;
  /** scale: tasks acknowledged per second, adds in chunks. */
  addsPerSecond?: number;
  /** scale: RSS of the process holding the queue (the master; Redis) after the adds. */
  rssMb?: number;
  peakRssMb?: number;
  /** taskmaster: database commands and documents the master wrote, per task. */
  dbCommandsPerTask?: number;
  dbDocumentsPerTask?: number;
  /** µs of CPU per task per process role over the measurement (bench/peer/cpu.ts). */
  cpuUsPerTask?: CpuBudget;
  /** Child processes of the workers (runners) alive at the end of the measurement. */
  childProcesses?: number;
  /** taskmaster: messages between the master and its runners, both ways, per task. */
  runnerMessagesPerTask?: number;
  failed?: number;
  seconds?: number;
}

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

export function median(values: number[]): number {
  const v = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const mid = Math.floor(v.length / 2);
  return v.length % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
}

export const round2 = (x: number): number => Math.round(x * 100) / 100;

/** Three significant digits: 0.00123, 2.93, 1,280. */
export const significant = (x: number): number => Number(x.toPrecision(3));

/** p50, p99 and max of latencies in ms. */
export function latencyFigures(latencies: number[]): Pick<Figures, 'p50Ms' | 'p99Ms' | 'maxMs'> {
  const sorted = [...latencies].sort((a, b) => a - b);
  return {
    p50Ms: round2(percentile(sorted, 50)),
    p99Ms: round2(percentile(sorted, 99)),
    maxMs: round2(sorted[sorted.length - 1] ?? NaN),
  };
}

/**
 * Calls `send(i, dueAt)` for i = 0..count-1 at `rate` per second, each at its due time whether or not
 * earlier sends have been answered (an open loop: a slow system gets no breathing space). `dueAt` is
 * on the `performance.now()` clock; latencies measured from it include any delay in sending.
 * Resolves with the send rate achieved once every send has settled.
 */
export async function openLoop(
  count: number,
  rate: number,
  send: (i: number, dueAt: number) => Promise<void>,
): Promise<number> {
  const interval = 1000 / rate;
  const start = performance.now();
  const sends: Promise<void>[] = [];
  let i = 0;
  while (i < count) {
    const now = performance.now();
    for (; i < count && start + i * interval <= now; i++) sends.push(send(i, start + i * interval));
    if (i < count) await sleep(Math.max(0, start + i * interval - performance.now()));
  }
  const sentIn = performance.now() - start;
  await Promise.all(sends);
  return count > 1 ? Math.round(((count - 1) * 1000) / sentIn) : NaN;
}

/** Rejects after `ms` with a message naming what did not happen. */
export function deadline<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} within ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

/**
 * The BullMQ half of the peer benchmark: a private Redis per measurement (bench/peer/redis.ts), a
 * Queue in this process, and worker processes forked from bench/peer/bullmq-worker.ts with a no-op
 * processor, inline or sandboxed. Completion at the producer is BullMQ's own: QueueEvents' `completed`.
 * CPU counts Redis, the worker processes, their children and this process (bench/peer/cpu.ts).
 */
import { fork, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { Queue, QueueEvents } from 'bullmq';
import { CpuMeter } from './cpu';
import { deadline, latencyFigures, openLoop, round2, type Figures, type Workload } from './measure';
import { rssMb } from './processes';
import { startRedis, type PrivateRedis, type RedisPersistence } from './redis';

const ROOT = path.resolve(__dirname, '..', '..');
const QUEUE = 'peer';

/** Where BullMQ runs the processor: in the worker process, in child processes, in worker threads. */
export type Processor = 'inline' | 'process' | 'thread';

export interface BullSetup {
  persistence: RedisPersistence;
  processor: Processor;
}

interface Progress {
  completed: number;
  firstAt: number;
  lastAt: number;
}

interface Workers {
  pids: number[];
  /** Tells every worker to start fetching. */
  run(): void;
  /** Counts completions from zero again: `completed` waits for ones after this call. */
  reset(): void;
  /** Resolves when the workers together have completed `n` jobs, with their latest reports. */
  completed(n: number): Promise<Progress[]>;
  close(): Promise<void>;
}

const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of live) c.kill('SIGKILL');
});

/** Forks `count` worker processes and resolves once all are connected (not yet fetching). */
async function forkWorkers(redis: PrivateRedis, w: Workload, processor: Processor): Promise<Workers> {
  const reports: Progress[] = [];
  const changed = new Set<() => void>();
  let generation = 0;
  const children = Array.from({ length: w.workers }, (_, i) => {
    const child = fork(
      path.join(ROOT, 'bin', 'run-ts.js'),
      [
        path.join(__dirname, 'bullmq-worker.ts'),
        String(redis.port),
        QUEUE,
        String(w.slots),
        String(w.timeoutMs + 60_000),
        processor,
      ],
      { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] },
    );
    live.add(child);
    child.once('exit', () => live.delete(child));
    reports[i] = { completed: 0, firstAt: 0, lastAt: 0 };
    child.on('message', (m: { type: string; generation: number } & Progress) => {
      // A report sent before the worker read the latest reset counts what came before it.
      if (m.type !== 'progress' || m.generation !== generation) return;
      reports[i] = { completed: m.completed, firstAt: m.firstAt, lastAt: m.lastAt };
      for (const c of changed) c();
    });
    return child;
  });
  await deadline(
    Promise.all(
      children.map(
        (c, i) =>
          new Promise<void>((resolve, reject) => {
            c.on('message', (m: { type: string }) => m.type === 'ready' && resolve());
            c.once('exit', (code) => reject(new Error(`bullmq worker ${i} exited with ${code}`)));
          }),
      ),
    ),
    60_000,
    'bullmq workers did not connect',
  );
  return {
    pids: children.map((c) => c.pid as number),
    run: () => children.forEach((c) => c.send('run')),
    reset: () => {
      generation++;
      reports.fill({ completed: 0, firstAt: 0, lastAt: 0 });
      for (const c of children) c.send({ type: 'reset', generation });
    },
    completed: (n) =>
      new Promise((resolve) => {
        const check = () => {
          if (reports.reduce((s, r) => s + r.completed, 0) < n) return;
          changed.delete(check);
          resolve(reports);
        };
        changed.add(check);
        check();
      }),
    close: async () => {
      await Promise.all(
        children.map(
          (c) =>
            new Promise<void>((resolve) => {
              if (c.exitCode !== null || c.signalCode !== null) return resolve();
              const timer = setTimeout(() => c.kill('SIGKILL'), 5_000);
              c.once('exit', () => {
                clearTimeout(timer);
                resolve();
              });
              c.send('close');
            }),
        ),
      );
    },
  };
}

async function withRedis<T>(
  persistence: RedisPersistence,
  fn: (redis: PrivateRedis, queue: Queue) => Promise<T>,
  streamMaxLen?: number,
): Promise<T> {
  const redis = await startRedis(persistence);
  const connection = { host: '127.0.0.1', port: redis.port, maxRetriesPerRequest: null };
  const queue = new Queue(QUEUE, {
    connection,
    ...(streamMaxLen ? { streams: { events: { maxLen: streamMaxLen } } } : {}),
  });
  try {
    await queue.waitUntilReady();
    return await fn(redis, queue);
  } finally {
    await queue.close().catch(() => {});
    await redis.stop();
  }
}

async function addChunks(queue: Queue, n: number, chunk: number): Promise<void> {
  for (let i = 0; i < n; i += chunk) {
    const size = Math.min(chunk, n - i);
    await queue.addBulk(Array.from({ length: size }, () => ({ name: 'noop', data: {} })));
  }
}

/** Counts Redis and this process from now, and then each worker and its children once it is ready. */
function meter(redis: PrivateRedis): CpuMeter {
  const cpu = new CpuMeter();
  cpu.watch(redis.pid, 'database');
  return cpu;
}

/** The id prefix of warm-up jobs, whose events a measurement ignores. */
const WARM_UP = 'warm-up-';

/**
 * A sandbox forks its children (or starts its threads) at the first jobs, one per job running at
 * once: `workers` × `slots` jobs at once start them all, as a runner starts its child before it
 * registers, so that neither system's measurement holds process start-up. Then counts from zero.
 */
async function warmUp(queue: Queue, workers: Workers, w: Workload): Promise<void> {
  const n = w.workers * w.slots;
  const jobs = Array.from({ length: n }, (_, i) => ({
    name: 'warm-up',
    data: {},
    opts: { jobId: `${WARM_UP}${i}` },
  }));
  await queue.addBulk(jobs);
  await deadline(workers.completed(n), w.timeoutMs, `bullmq warm-up: ${n} jobs were not all completed`);
  workers.reset();
}

/** `w.tasks` jobs queued, then `w.workers` worker processes told to start at once drain them. */
export function drain({ persistence, processor }: BullSetup, w: Workload): Promise<Figures> {
  return withRedis(persistence, async (redis, queue) => {
    if (processor !== 'inline') return drainWarm(redis, queue, processor, w);
    const cpu = meter(redis);
    await addChunks(queue, w.tasks, w.chunk);
    const workers = await forkWorkers(redis, w, processor);
    try {
      for (const pid of workers.pids) cpu.watch(pid, 'workers', true);
      workers.run();
      const reports = await deadline(
        workers.completed(w.tasks),
        w.timeoutMs,
        `bullmq drain: ${w.tasks} jobs were not all completed`,
      );
      return { ...drainFigures(reports, w), ...cpu.perTask(w.tasks) };
    } finally {
      await workers.close();
    }
  });
}

/**
 * A drain on a sandbox: the workers warmed up first (`warmUp`), then the queue paused while the jobs
 * are added, so that the workers start on all of them at once when it resumes.
 */
async function drainWarm(
  redis: PrivateRedis,
  queue: Queue,
  processor: Processor,
  w: Workload,
): Promise<Figures> {
  const workers = await forkWorkers(redis, w, processor);
  try {
    workers.run();
    await warmUp(queue, workers, w);
    await queue.pause();
    const cpu = meter(redis);
    for (const pid of workers.pids) cpu.watch(pid, 'workers', true);
    await addChunks(queue, w.tasks, w.chunk);
    await queue.resume();
    const reports = await deadline(
      workers.completed(w.tasks),
      w.timeoutMs,
      `bullmq drain: ${w.tasks} jobs were not all completed`,
    );
    return { ...drainFigures(reports, w), ...cpu.perTask(w.tasks) };
  } finally {
    await workers.close();
  }
}

function drainFigures(reports: Progress[], w: Workload): Figures {
  const first = Math.min(...reports.filter((r) => r.firstAt).map((r) => r.firstAt));
  const last = Math.max(...reports.map((r) => r.lastAt));
  const seconds = (last - first) / 1000;
  return { jobsPerSecond: Math.round((w.tasks - 1) / seconds), seconds: round2(seconds) };
}

/** `w.adds` single adds at `w.rate`/s, open loop, workers waiting; add → `completed` at the producer. */
export function light({ persistence, processor }: BullSetup, w: Workload): Promise<Figures> {
  // The events stream must hold every event until QueueEvents has read it.
  return withRedis(
    persistence,
    async (redis, queue) => {
      const events = new QueueEvents(QUEUE, {
        connection: { host: '127.0.0.1', port: redis.port, maxRetriesPerRequest: null },
      });
      const workers = await forkWorkers(redis, w, processor);
      try {
        await events.waitUntilReady();
        workers.run();
        if (processor !== 'inline') await warmUp(queue, workers, w);
        const cpu = meter(redis);
        for (const pid of workers.pids) cpu.watch(pid, 'workers', true);
        const dueAt = new Map<string, number>();
        // A completion can be read before the add's reply: keep arrivals and pair them at the end.
        const arrivals = new Map<string, number>();
        let failed = 0;
        const all = new Promise<void>((resolve) => {
          const arrive = (jobId: string) => {
            arrivals.set(jobId, performance.now());
            if (arrivals.size === w.adds) resolve();
          };
          // A warm-up's events can still be on their way.
          events.on('completed', ({ jobId }) => !jobId.startsWith(WARM_UP) && arrive(jobId));
          events.on('failed', ({ jobId }) => {
            if (jobId.startsWith(WARM_UP)) return;
            failed++;
            arrive(jobId);
          });
        });
        const sentPerSecond = await openLoop(w.adds, w.rate, async (_i, due) => {
          const job = await queue.add('noop', {});
          dueAt.set(job.id as string, due);
        });
        await deadline(all, w.timeoutMs, `bullmq light: ${w.adds} completions did not all arrive`);
        const latencies = [...arrivals].map(([id, at]) => at - (dueAt.get(id) ?? NaN));
        return { sentPerSecond, ...latencyFigures(latencies), failed, ...cpu.perTask(w.adds) };
      } finally {
        await workers.close();
        await events.close().catch(() => {});
      }
    },
    Math.max(10_000, w.adds * 10),
  );
}

/** `w.scale` jobs added in chunks with nobody working: adds/s and Redis's RSS. */
export function scale({ persistence }: BullSetup, w: Workload): Promise<Figures> {
  return withRedis(persistence, async (redis, queue) => {
    const cpu = meter(redis);
    const start = performance.now();
    await deadline(addChunks(queue, w.scale, w.chunk), w.timeoutMs, `bullmq scale: ${w.scale} adds`);
    const seconds = (performance.now() - start) / 1000;
    const rss = rssMb(redis.pid);
    return {
      addsPerSecond: Math.round(w.scale / seconds),
      seconds: round2(seconds),
      rssMb: rss.rss,
      peakRssMb: rss.peak,
      ...cpu.perTask(w.scale),
    };
  });
}

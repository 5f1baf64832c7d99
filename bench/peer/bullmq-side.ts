/**
 * The BullMQ half of the peer benchmark: a private Redis per measurement (bench/peer/redis.ts), a
 * Queue in this process, and worker processes forked from bench/peer/bullmq-worker.ts with a no-op
 * processor. Completion at the producer is BullMQ's own: QueueEvents' `completed`.
 */
import { fork, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { Queue, QueueEvents } from 'bullmq';
import { deadline, latencyFigures, openLoop, round2, type Figures, type Workload } from './measure';
import { rssMb } from './processes';
import { startRedis, type PrivateRedis, type RedisPersistence } from './redis';

const ROOT = path.resolve(__dirname, '..', '..');
const QUEUE = 'peer';

interface Progress {
  completed: number;
  firstAt: number;
  lastAt: number;
}

interface Workers {
  /** Tells every worker to start fetching. */
  run(): void;
  /** Resolves when the workers together have completed `n` jobs, with their latest reports. */
  completed(n: number): Promise<Progress[]>;
  close(): Promise<void>;
}

const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of live) c.kill('SIGKILL');
});

/** Forks `count` worker processes and resolves once all are connected (not yet fetching). */
async function forkWorkers(redis: PrivateRedis, w: Workload): Promise<Workers> {
  const reports: Progress[] = [];
  const changed = new Set<() => void>();
  const children = Array.from({ length: w.workers }, (_, i) => {
    const child = fork(
      path.join(ROOT, 'bin', 'run-ts.js'),
      [
        path.join(__dirname, 'bullmq-worker.ts'),
        String(redis.port),
        QUEUE,
        String(w.slots),
        String(w.timeoutMs + 60_000),
      ],
      { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] },
    );
    live.add(child);
    child.once('exit', () => live.delete(child));
    reports[i] = { completed: 0, firstAt: 0, lastAt: 0 };
    child.on('message', (m: { type: string } & Progress) => {
      if (m.type !== 'progress') return;
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
    run: () => children.forEach((c) => c.send('run')),
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

/** `w.tasks` jobs queued, then `w.workers` worker processes told to start at once drain them. */
export function drain(persistence: RedisPersistence, w: Workload): Promise<Figures> {
  return withRedis(persistence, async (redis, queue) => {
    await addChunks(queue, w.tasks, w.chunk);
    const workers = await forkWorkers(redis, w);
    try {
      workers.run();
      const reports = await deadline(
        workers.completed(w.tasks),
        w.timeoutMs,
        `bullmq drain: ${w.tasks} jobs were not all completed`,
      );
      const first = Math.min(...reports.filter((r) => r.firstAt).map((r) => r.firstAt));
      const last = Math.max(...reports.map((r) => r.lastAt));
      const seconds = (last - first) / 1000;
      return { jobsPerSecond: Math.round((w.tasks - 1) / seconds), seconds: round2(seconds) };
    } finally {
      await workers.close();
    }
  });
}

/** `w.adds` single adds at `w.rate`/s, open loop, workers waiting; add → `completed` at the producer. */
export function light(persistence: RedisPersistence, w: Workload): Promise<Figures> {
  // The events stream must hold every event until QueueEvents has read it.
  return withRedis(
    persistence,
    async (redis, queue) => {
      const events = new QueueEvents(QUEUE, {
        connection: { host: '127.0.0.1', port: redis.port, maxRetriesPerRequest: null },
      });
      const workers = await forkWorkers(redis, w);
      try {
        await events.waitUntilReady();
        workers.run();
        const dueAt = new Map<string, number>();
        // A completion can be read before the add's reply: keep arrivals and pair them at the end.
        const arrivals = new Map<string, number>();
        let failed = 0;
        const all = new Promise<void>((resolve) => {
          const arrive = (jobId: string) => {
            arrivals.set(jobId, performance.now());
            if (arrivals.size === w.adds) resolve();
          };
          events.on('completed', ({ jobId }) => arrive(jobId));
          events.on('failed', ({ jobId }) => {
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
        return { sentPerSecond, ...latencyFigures(latencies), failed };
      } finally {
        await workers.close();
        await events.close().catch(() => {});
      }
    },
    Math.max(10_000, w.adds * 10),
  );
}

/** `w.scale` jobs added in chunks with nobody working: adds/s and Redis's RSS. */
export function scale(persistence: RedisPersistence, w: Workload): Promise<Figures> {
  return withRedis(persistence, async (redis, queue) => {
    const start = performance.now();
    await deadline(addChunks(queue, w.scale, w.chunk), w.timeoutMs, `bullmq scale: ${w.scale} adds`);
    const seconds = (performance.now() - start) / 1000;
    const rss = rssMb(redis.pid);
    return {
      addsPerSecond: Math.round(w.scale / seconds),
      seconds: round2(seconds),
      rssMb: rss.rss,
      peakRssMb: rss.peak,
    };
  });
}

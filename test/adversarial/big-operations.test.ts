/**
 * Big operations on a master in this process, so that its event loop can be watched
 * (perf_hooks' monitorEventLoopDelay) and its database commands counted: each test drives one
 * operation at a modest size, then checks its cost is linear (the commands it sends do not grow with
 * the collection), the event loop stayed free, memory stayed bounded, nothing acknowledged was lost,
 * and the master is alive and useful. bench/big.ts gives the figures at full size.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import type { Connection } from 'mongoose';
import { connectTestDb } from '../helpers/db';
import { httpRequest, startCluster, type Cluster } from './cluster';

const MB = 1024 * 1024;

/** Runs `op` while watching the event loop and the process's RSS; resolves with both peaks. */
async function watched<T>(op: () => Promise<T>): Promise<{ out: T; loopMaxMs: number; rssGrowth: number }> {
  const loop = monitorEventLoopDelay({ resolution: 10 });
  const rss0 = process.memoryUsage().rss;
  let rssPeak = rss0;
  const sampler = setInterval(() => (rssPeak = Math.max(rssPeak, process.memoryUsage().rss)), 20);
  loop.enable();
  try {
    const out = await op();
    return { out, loopMaxMs: loop.max / 1e6, rssGrowth: rssPeak - rss0 };
  } finally {
    loop.disable();
    clearInterval(sampler);
  }
}

/** Reads of `tasks` the master sends that are not `_id` look-ups: on FerretDB, each reads it whole. */
function countScans(conn: Connection): { scans: () => number; stop: () => void } {
  let scans = 0;
  conn.set('debug', (collection: string, method: string, filter: unknown) => {
    if (collection !== 'tasks' || (method !== 'find' && method !== 'aggregate')) return;
    const f = (method === 'find' ? filter : undefined) as Record<string, unknown> | undefined;
    if (!f || !('_id' in f)) scans++;
  });
  return { scans: () => scans, stop: () => conn.set('debug', false) };
}

describe('adversarial: big operations', () => {
  let c: Cluster;
  let db: Connection;

  beforeAll(async () => {
    c = await startCluster(__filename);
    db = await connectTestDb(c.dbName);
  });
  afterAll(async () => {
    await db?.close();
    await c?.close();
  });

  test('retry-failed of 4,000 tasks among 10,000 reads the collection once, the event loop never still 250 ms, RSS growth under 150 MB', async () => {
    const docs = 10_000;
    const roots = 2000;
    const now = Date.now();
    const tasks = db.collection<Record<string, unknown> & { _id: string }>('tasks');
    // Stored final tasks as the master writes them: 2,000 failed in batch "big", each with a
    // dependent failed through it (EDEPFAILED), among 6,000 done tasks of another batch. Their
    // module is on no runner: once retried they wait, out of the honest task's way.
    for (let i = 0; i < docs; i += 1000) {
      await tasks.insertMany(
        Array.from({ length: 1000 }, (_, k) => {
          const n = i + k;
          const base = { module: 'nowhere', params: [n], maxAttempts: 3, created: now, updated: now, rev: 3 };
          if (n < roots)
            return {
              ...base,
              _id: `f-${n}`,
              batch: 'big',
              state: 'failed',
              attempts: 3,
              error: { code: 'ETASK', message: 'x' },
            };
          if (n < 2 * roots)
            return {
              ...base,
              _id: `d-${n - roots}`,
              batch: 'big',
              state: 'failed',
              attempts: 0,
              dependencies: [`f-${n - roots}`],
              error: { code: 'EDEPFAILED', message: `dependency "f-${n - roots}" failed` },
            };
          return { ...base, _id: `old-${n}`, batch: 'old', state: 'done', attempts: 1, result: null };
        }),
      );
    }
    const reads = countScans((await c.master.readTasks()).conn);
    const { out, loopMaxMs, rssGrowth } = await watched(() =>
      httpRequest(c.master.url, { path: '/api/batches/big/retry-failed', method: 'POST' }),
    );
    reads.stop();
    expect(out.status).toBe(200);
    expect((out.json().retried as string[]).length).toBe(2 * roots);
    // Whether the batch exists (a read that stops at its first task), and one pass over the failures.
    expect(reads.scans()).toBeLessThanOrEqual(2);
    expect(loopMaxMs).toBeLessThan(250);
    expect(rssGrowth).toBeLessThan(150 * MB);
    // Nothing lost: every task of the batch is back in memory, waiting or ready to run.
    const live = [...c.master.scheduler.tasks.values()].filter((t) => t.batch === 'big');
    expect(live.length).toBe(2 * roots);
    expect(new Set(live.map((t) => t.state))).toEqual(new Set(['ready', 'waiting']));
    await c.assertAlive();
  });
});

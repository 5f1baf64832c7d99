/**
 * Big operations on one master (in this process, on the embedded database or MONGO_URL): how long
 * each takes and the longest the event loop stood still meanwhile (perf_hooks'
 * monitorEventLoopDelay), with /health's slowest answer sampled every 20 ms during it.
 *
 *   retry    POST /api/batches/big/retry-failed: `--failed` failed tasks (half of them with a
 *            dependent that failed with EDEPFAILED) in a collection of `--docs` documents.
 *
 *   npm run bench:big -- [--docs 70000] [--failed 20000] [--only retry]
 */
import http from 'node:http';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import mongoose from 'mongoose';
import { createLogger } from '../common/logger';
import { Master } from '../master/master';
import { benchDatabase, runBench } from './run';

const { values: args } = parseArgs({
  options: {
    docs: { type: 'string', default: '70000' },
    failed: { type: 'string', default: '20000' },
    only: { type: 'string' },
  },
});

function request(url: string, method: string, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(new URL(path, url), { method }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** Runs `op` while sampling the event loop and /health; prints the figures under `name`. */
async function measure<T>(name: string, url: string, op: () => Promise<T>): Promise<T> {
  const loop = monitorEventLoopDelay({ resolution: 10 });
  let slowestHealth = 0;
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      const t = performance.now();
      await request(url, 'GET', '/health');
      slowestHealth = Math.max(slowestHealth, performance.now() - t);
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  loop.enable();
  const t0 = performance.now();
  const out = await op();
  const took = performance.now() - t0;
  loop.disable();
  sampling = false;
  await sampler;
  process.stdout.write(
    `${name}: ${took.toFixed(0)} ms, event loop max delay ${(loop.max / 1e6).toFixed(0)} ms, ` +
      `slowest /health ${slowestHealth.toFixed(0)} ms\n`,
  );
  return out;
}

async function retryBench(mongoUrl: string): Promise<void> {
  const docs = Number(args.docs);
  const failed = Number(args.failed);
  const dbName = `benchbig_${Date.now()}`;
  const conn = await mongoose.createConnection(mongoUrl, { dbName }).asPromise();
  const tasks = conn.collection<Record<string, unknown> & { _id: string }>('tasks');
  const now = Date.now();
  const roots = Math.ceil(failed / 2);
  const t0 = performance.now();
  for (let i = 0; i < docs; i += 1000) {
    await tasks.insertMany(
      Array.from({ length: Math.min(1000, docs - i) }, (_, k) => {
        const n = i + k;
        const base = { module: 'noop', params: [n], attempts: 3, maxAttempts: 3, created: now, updated: now };
        const done = { ...base, rev: 3, assigned: { who: 'r', when: now, completed: now } };
        if (n < roots)
          return {
            ...done,
            _id: `f-${n}`,
            batch: 'big',
            state: 'failed',
            error: { code: 'ETASK', message: 'failed' },
          };
        if (n < failed)
          return {
            ...done,
            _id: `d-${n}`,
            batch: 'big',
            state: 'failed',
            attempts: 0,
            dependencies: [`f-${n - roots}`],
            error: { code: 'EDEPFAILED', message: `dependency "f-${n - roots}" failed` },
          };
        return { ...done, _id: `old-${n}`, batch: 'old', state: 'done', result: null };
      }),
    );
  }
  process.stderr.write(`pre-filled ${docs} tasks in ${(performance.now() - t0).toFixed(0)} ms\n`);
  const master = new Master({
    mongoUrl,
    dbName,
    port: 0,
    logger: createLogger({ level: 'warn', format: 'json', stderr: true }),
  });
  await master.start();
  try {
    const r = await measure(`retry-failed of ${failed} tasks among ${docs}`, master.url, () =>
      request(master.url, 'POST', '/api/batches/big/retry-failed'),
    );
    const retried = (JSON.parse(r.body) as { retried?: string[] }).retried?.length;
    process.stdout.write(`  status ${r.status}, ${retried} retried\n`);
  } finally {
    await master.close();
    await conn.dropDatabase();
    await conn.close();
  }
}

async function main(): Promise<void> {
  const db = await benchDatabase();
  try {
    if (!args.only || args.only === 'retry') await retryBench(db.url);
  } finally {
    await db.stop();
  }
}

runBench(main);

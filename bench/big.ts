/**
 * Big operations on one master (in a process of its own, bench/child-master.ts, on the embedded
 * database or MONGO_URL): how long each takes, the longest the master's event loop stood still
 * meanwhile (perf_hooks' monitorEventLoopDelay, in the master's process), the same for this process
 * (the clients: the watchers parsing their outcomes), and /health's slowest answer sampled every
 * 20 ms during it. `--cpu-prof DIR` writes the master's CPU profile there.
 *
 *   retry    POST /api/batches/big/retry-failed: `--failed` failed tasks (half of them with a
 *            dependent that failed with EDEPFAILED) in a collection of `--docs` documents.
 *
 *   watch    a cancel of `--watched` tasks each watched by `--watchers` connections: from the
 *            cancel's answer until every connection has every outcome.
 *
 *   feed     reading an NDJSON batch file of `--feed-mb` MB (tasks of about 1 KB) in a process of its
 *            own: its peak RSS (VmHWM) with the file read as a stream, and read whole as before.
 *
 *   npm run bench:big -- [--docs 70000] [--failed 20000] [--watchers 50] [--watched 50000]
 *                        [--feed-mb 300] [--only retry|watch|feed]
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import mongoose from 'mongoose';
import { io } from 'socket.io-client';
import { parseBatch, readBatch } from '../feeder/batch-file';
import { Feeder } from '../feeder/feeder';
import { startChildMaster, type ChildMaster } from './child-master';
import { benchDatabase, runBench } from './run';

const { values: args } = parseArgs({
  options: {
    docs: { type: 'string', default: '70000' },
    failed: { type: 'string', default: '20000' },
    only: { type: 'string' },
    watchers: { type: 'string', default: '50' },
    watched: { type: 'string', default: '50000' },
    'feed-mb': { type: 'string', default: '300' },
    'cpu-prof': { type: 'string' },
    // Internal: the process that reads the file and reports its peak RSS.
    'read-child': { type: 'string' },
    whole: { type: 'boolean', default: false },
  },
});

function request(url: string, method: string, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    // A connection of its own each time: a kept-alive one the master closed would fail the next.
    const req = http.request(new URL(path, url), { method, agent: false }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

/**
 * Runs `op` while sampling both event loops (the master's and this process's) and /health; prints
 * the figures under `name`.
 */
async function measure<T>(name: string, master: ChildMaster, op: () => Promise<T>): Promise<T> {
  const loop = monitorEventLoopDelay({ resolution: 10 });
  let slowestHealth = 0;
  let failedHealth = 0;
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      const t = performance.now();
      await request(master.url, 'GET', '/health').catch(() => failedHealth++);
      slowestHealth = Math.max(slowestHealth, performance.now() - t);
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  await master.loopStart();
  loop.enable();
  const t0 = performance.now();
  const out = await op();
  const took = performance.now() - t0;
  loop.disable();
  const masterMax = await master.loopStop();
  sampling = false;
  await sampler;
  process.stdout.write(
    `${name}: ${took.toFixed(0)} ms, master's event loop max delay ${masterMax.toFixed(0)} ms ` +
      `(the clients' ${(loop.max / 1e6).toFixed(0)} ms), slowest /health ${slowestHealth.toFixed(0)} ms` +
      `${failedHealth > 0 ? `, ${failedHealth} /health failed` : ''}\n`,
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
  const master = await startChildMaster(mongoUrl, dbName, { cpuProfDir: args['cpu-prof'] });
  try {
    const r = await measure(`retry-failed of ${failed} tasks among ${docs}`, master, () =>
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

async function watchBench(mongoUrl: string): Promise<void> {
  const watchers = Number(args.watchers);
  const n = Number(args.watched);
  const dbName = `benchwatch_${Date.now()}`;
  const master = await startChildMaster(mongoUrl, dbName, { cpuProfDir: args['cpu-prof'] });
  const feeder = new Feeder({ master: master.url });
  const sockets: ReturnType<typeof io>[] = [];
  try {
    await feeder.ready();
    const ids = Array.from({ length: n }, (_, i) => `w-${i}`);
    await feeder.add(
      ids.map((id) => ({ id, module: 'nowhere' })),
      { batch: 'watched' },
    );
    let received = 0;
    for (let k = 0; k < watchers; k++) {
      const s = io(new URL('/feeder', master.url).href, { transports: ['websocket'], forceNew: true });
      sockets.push(s);
      await new Promise<void>((resolve) => s.once('connect', () => resolve()));
      for (let i = 0; i < n; i += 4000) await s.emitWithAck('tasks:watch', { ids: ids.slice(i, i + 4000) });
      s.on('task:outcomes', (m: { outcomes: unknown[] }) => (received += m.outcomes.length));
    }
    await feeder.cancel({ batch: 'watched' });
    await measure(`delivery of ${n} outcomes to ${watchers} connections after a cancel`, master, async () => {
      while (received < n * watchers) await new Promise((r) => setTimeout(r, 20));
    });
  } finally {
    for (const s of sockets) s.close();
    await feeder.close();
    await master.close();
  }
}

/** Writes an NDJSON file of about `mb` MB, then reads it in a child process both ways. */
function feedBench(): void {
  const mb = Number(args['feed-mb']);
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'taskmaster-bench-feed-')), 'big.ndjson');
  try {
    const fd = fs.openSync(file, 'w');
    const pad = 'x'.repeat(1000);
    let lines = 0;
    for (let written = 0; written < mb * 1024 * 1024; lines++) {
      const line = `{"id":"t-${lines}","module":"noop","params":[${lines},"${pad}"]}\n`;
      fs.writeSync(fd, line);
      written += line.length;
    }
    fs.closeSync(fd);
    for (const whole of [false, true]) {
      const r = spawnSync(
        process.execPath,
        [
          path.join(__dirname, '..', 'bin', 'run-ts.js'),
          __filename,
          '--read-child',
          file,
          ...(whole ? ['--whole'] : []),
        ],
        { encoding: 'utf8' },
      );
      process.stdout.write(
        `read ${mb} MB (${lines} tasks) ${whole ? 'whole, as before' : 'as a stream'}: ${(r.stdout || r.stderr).trim().split('\n').pop()}\n`,
      );
    }
  } finally {
    fs.rmSync(path.dirname(file), { recursive: true, force: true });
  }
}

async function readChild(file: string): Promise<void> {
  const t0 = performance.now();
  const batch = args.whole ? parseBatch(fs.readFileSync(file, 'utf8'), file) : await readBatch(file);
  const status = fs.readFileSync('/proc/self/status', 'utf8');
  const peak = Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1] ?? 0) / 1024;
  process.stdout.write(
    `${batch.tasks.length} tasks in ${(performance.now() - t0).toFixed(0)} ms, peak RSS ${peak.toFixed(0)} MB\n`,
  );
}

async function main(): Promise<void> {
  if (args['read-child']) return readChild(args['read-child']);
  if (args.only === 'feed') return feedBench();
  const db = await benchDatabase();
  try {
    if (!args.only || args.only === 'retry') await retryBench(db.url);
    if (!args.only || args.only === 'watch') await watchBench(db.url);
  } finally {
    await db.stop();
  }
  if (!args.only) feedBench();
}

runBench(main);

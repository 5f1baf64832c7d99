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
 *   watch    a cancel of `--watched` tasks each watched by `--watchers` connections (ten to a
 *            process of their own, bench/watch-clients.ts): from the cancel until every connection
 *            has every outcome.
 *
 *   feed     an NDJSON batch file of `--feed-mb` MB (tasks of about 1 KB), in a process of its own:
 *            its peak RSS (VmHWM) read whole (what the feed held before), and fed to a master by
 *            `taskmaster feed` (which streams it).
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
import { PassThrough } from 'node:stream';
import { parseArgs } from 'node:util';
import mongoose from 'mongoose';
import { readBatch } from '../feeder/batch-file';
import { feed } from '../feeder/feed-cli';
import { Feeder } from '../feeder/feeder';
import { startChildMaster, type ChildMaster } from './child-master';
import { benchDatabase, runBench } from './run';
import { startWatchClients, type WatchClients } from './watch-clients';

const { values: args } = parseArgs({
  options: {
    docs: { type: 'string', default: '70000' },
    failed: { type: 'string', default: '20000' },
    only: { type: 'string' },
    watchers: { type: 'string', default: '50' },
    watched: { type: 'string', default: '50000' },
    'feed-mb': { type: 'string', default: '300' },
    'cpu-prof': { type: 'string' },
    // Internal: the process that reads or feeds the file and reports its peak RSS.
    'feed-child': { type: 'string' },
    how: { type: 'string' },
    'master-url': { type: 'string' },
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
 * Runs `op` while sampling both event loops (the master's and this process's, the clients') and the
 * master's /health (from a thread of its own: bench/child-master.ts); prints the figures under `name`.
 */
async function measure<T>(name: string, master: ChildMaster, op: () => Promise<T>): Promise<T> {
  const loop = monitorEventLoopDelay({ resolution: 10 });
  await master.loopStart();
  loop.enable();
  const t0 = performance.now();
  const out = await op();
  const took = performance.now() - t0;
  loop.disable();
  const m = await master.loopStop();
  process.stdout.write(
    `${name}: ${took.toFixed(0)} ms, master's event loop max delay ${m.loopMaxMs.toFixed(0)} ms ` +
      `(the clients' ${(loop.max / 1e6).toFixed(0)} ms), slowest /health ${m.healthMaxMs.toFixed(0)} ms` +
      `${m.healthFailed > 0 ? `, ${m.healthFailed} /health failed` : ''}\n`,
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
  const clients: WatchClients[] = [];
  try {
    await feeder.ready();
    await feeder.add(
      Array.from({ length: n }, (_, i) => ({ id: `w-${i}`, module: 'nowhere' })),
      { batch: 'watched' },
    );
    // Ten connections a process (and a process for the rest).
    for (let k = 0; k < watchers; k += 10)
      clients.push(await startWatchClients(master.url, Math.min(10, watchers - k), n));
    await measure(
      `a cancel of ${n} tasks and the delivery of their outcomes to ${watchers} connections`,
      master,
      async () => {
        await feeder.cancel({ batch: 'watched' });
        await Promise.all(clients.map((c) => c.done));
      },
    );
  } finally {
    for (const c of clients) c.close();
    await feeder.close();
    await master.close();
  }
}

/**
 * Writes an NDJSON file of about `mb` MB, reads it in a process of its own whole (readBatch: what
 * `taskmaster feed` held before it streamed), then feeds it to a master with `taskmaster feed`
 * (feed-cli.ts) in a process of its own; each reports its peak RSS.
 */
async function feedBench(mongoUrl: string): Promise<void> {
  const mb = Number(args['feed-mb']);
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'taskmaster-bench-feed-')), 'big.ndjson');
  const master = await startChildMaster(mongoUrl, `benchfeed_${Date.now()}`);
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
    for (const how of ['read', 'feed']) {
      const r = spawnSync(
        process.execPath,
        [
          path.join(__dirname, '..', 'bin', 'run-ts.js'),
          __filename,
          '--feed-child',
          file,
          '--how',
          how,
          '--master-url',
          master.url,
        ],
        { encoding: 'utf8' },
      );
      process.stdout.write(
        `${how === 'read' ? 'read whole (readBatch, as the feed held it before)' : 'taskmaster feed to a master'} of ${mb} MB (${lines} tasks): ${(r.stdout || r.stderr).trim().split('\n').pop()}\n`,
      );
    }
  } finally {
    await master.close();
    fs.rmSync(path.dirname(file), { recursive: true, force: true });
  }
}

async function feedChild(file: string): Promise<void> {
  const t0 = performance.now();
  let what: string;
  if (args.how === 'read') what = `${(await readBatch(file)).tasks.length} tasks read`;
  else {
    const err = new PassThrough();
    let said = '';
    err.on('data', (d: Buffer) => (said = d.toString()));
    const code = await feed({
      file,
      feeder: { master: args['master-url'] as string },
      out: new PassThrough().resume(),
      err,
    });
    what = `exit ${code} (${said.trim() || 'no message'})`;
  }
  const status = fs.readFileSync('/proc/self/status', 'utf8');
  const peak = Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1] ?? 0) / 1024;
  process.stdout.write(
    `${what} in ${(performance.now() - t0).toFixed(0)} ms, peak RSS ${peak.toFixed(0)} MB\n`,
  );
}

async function main(): Promise<void> {
  if (args['feed-child']) return feedChild(args['feed-child']);
  const db = await benchDatabase();
  try {
    if (!args.only || args.only === 'retry') await retryBench(db.url);
    if (!args.only || args.only === 'watch') await watchBench(db.url);
    if (!args.only || args.only === 'feed') await feedBench(db.url);
  } finally {
    await db.stop();
  }
}

runBench(main);

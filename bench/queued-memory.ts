/**
 * Memory per queued task: a master process (`taskmaster master`, with `--expose-gc`) on the embedded
 * database and no runner; a Feeder adds N tasks of ~100 bytes of params each, in adds of `--chunk`;
 * once the store has written them all (`/health`'s write and fold backlogs at 0), the master
 * collects its garbage and the benchmark prints its RSS and heap, before and after, and bytes per
 * task; the database's RSS for reference. One JSON line per N.
 *
 *   npm run bench:memory -- [--tasks 100000,300000,1000000] [--chunk 1000] [--snapshot DIR]
 *
 * `--snapshot DIR`: the master also writes a heap snapshot of each measurement (after the collection)
 * to DIR/queued-N.heapsnapshot, to see what a task's bytes are made of.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { freePort, type Database } from '../db/server';
import { Feeder } from '../feeder/feeder';
import { rssMb, spawnTethered, type Tethered } from './peer/processes';
import { benchDatabase, masterArgs, runBench } from './run';

const { values: args } = parseArgs({
  options: {
    tasks: { type: 'string', default: '100000,300000,1000000' },
    chunk: { type: 'string', default: '1000' },
    snapshot: { type: 'string' },
  },
});
const PROBE = path.join(__dirname, 'gc-probe.js');
const ENV = { ...process.env, TASKMASTER_LOG_FORMAT: 'json', TASKMASTER_LOG_LEVEL: 'warn' };
/** Bound on one measurement: adding and writing 1M tasks takes a few minutes on 2 cores. */
const TIMEOUT_MS = 20 * 60_000;

interface Probe {
  rss: number;
  heapTotal: number;
  heapUsed: number;
  external: number;
  arrayBuffers: number;
}

/** The master's memory after a full collection (see bench/gc-probe.js). */
async function probe(master: Tethered, seen: { count: number }): Promise<Probe> {
  // A snapshot of a million tasks takes a while to write.
  const within = args.snapshot ? 600_000 : 30_000;
  process.kill(master.pid, 'SIGUSR2');
  const nth = ++seen.count;
  const all = new RegExp(`(gc-probe \\{[^\\n]*\\}\\n[^]*?){${nth}}`);
  await master.waitFor(all, 'gc probe', within);
  const lines = master.output().match(/gc-probe (\{[^\n]*\})/g) ?? [];
  const p = JSON.parse((lines.at(-1) as string).slice('gc-probe '.length)) as Probe & { gc: boolean };
  if (!p.gc) throw new Error('the master runs without --expose-gc');
  return p;
}

/** ~100 bytes of params as JSON, different per task. */
function paramsOf(i: number): unknown[] {
  return [{ user: `user-${i % 9973}`, order: i, sku: `SKU-${(i * 7919) % 100000}`, note: 'x'.repeat(40) }];
}

async function measure(db: Database, n: number, chunk: number): Promise<void> {
  const url = new URL(db.url);
  url.pathname = `/memory_${process.pid}_${n}`;
  const port = await freePort();
  const master = await spawnTethered(
    process.execPath,
    // One master alone: a long lease, so that a loaded machine delaying its renewals does not make
    // it stand by in the middle of the adds.
    ['--expose-gc', '--require', PROBE, ...masterArgs(port, url.toString(), ['--lease-ms', '600000'])],
    args.snapshot
      ? { ...ENV, TASKMASTER_BENCH_SNAPSHOT: path.resolve(args.snapshot, `queued-${n}.heapsnapshot`) }
      : ENV,
  );
  const feeder = new Feeder({ master: `http://127.0.0.1:${port}` });
  const seen = { count: 0 };
  try {
    await master.waitFor(/master listening/, 'master');
    await feeder.ready();
    const before = await probe(master, seen);
    const t0 = Date.now();
    for (let i = 0; i < n; i += chunk) {
      const size = Math.min(chunk, n - i);
      // Ids as long as generated ones, so that an add whose answer a lost connection swallowed (on a
      // loaded machine) can be sent again: what it stored is skipped.
      const tasks = Array.from({ length: size }, (_, k) => ({
        id: `task-${String(i + k).padStart(19, '0')}`,
        module: 'noop',
        params: paramsOf(i + k),
      }));
      for (let tries = 1; ; tries++) {
        try {
          await feeder.add(tasks, { onExisting: 'skip' });
          break;
        } catch (err) {
          if (tries >= 5) throw err;
          process.stderr.write(`add at ${i} (try ${tries}): ${String(err)}; again\n`);
          await feeder.ready();
        }
      }
      if (Date.now() - t0 > TIMEOUT_MS) throw new Error(`${n} adds: not done in ${TIMEOUT_MS} ms`);
    }
    const addSeconds = (Date.now() - t0) / 1000;
    for (;;) {
      const { store } = (await (await fetch(`http://127.0.0.1:${port}/health`)).json()) as {
        store: { writeBacklog: number; unwrittenTasks: number; foldBacklog: number };
      };
      if (store.writeBacklog === 0 && store.unwrittenTasks === 0 && store.foldBacklog === 0) break;
      if (Date.now() - t0 > TIMEOUT_MS) throw new Error(`store not idle after ${TIMEOUT_MS} ms`);
      await sleep(200);
    }
    const writtenSeconds = (Date.now() - t0) / 1000;
    const after = await probe(master, seen);
    const mb = (b: number) => Math.round(b / 1e5) / 10;
    process.stdout.write(
      `${JSON.stringify({
        tasks: n,
        chunk,
        paramsBytes: JSON.stringify(paramsOf(n - 1)).length,
        addSeconds: Number(addSeconds.toFixed(1)),
        writtenSeconds: Number(writtenSeconds.toFixed(1)),
        masterRssMb: mb(after.rss),
        masterHeapUsedMb: mb(after.heapUsed),
        masterHeapTotalMb: mb(after.heapTotal),
        emptyRssMb: mb(before.rss),
        emptyHeapUsedMb: mb(before.heapUsed),
        rssBytesPerTask: Math.round((after.rss - before.rss) / n),
        heapBytesPerTask: Math.round((after.heapUsed - before.heapUsed) / n),
        masterPeakRssMb: rssMb(master.pid).peak,
        databaseRssMb: 'pid' in db ? rssMb((db as { pid: number }).pid).rss : null,
      })}\n`,
    );
  } catch (err) {
    process.stderr.write(`master's last output:\n${master.output().slice(-4000)}\n`);
    throw err;
  } finally {
    await feeder.close().catch(() => {});
    await master.stop(10_000);
  }
}

async function main(): Promise<void> {
  const chunk = Number(args.chunk);
  const db = await benchDatabase();
  try {
    for (const n of args.tasks.split(',').map(Number)) await measure(db, n, chunk);
  } finally {
    await db.stop();
  }
}

runBench(main);

/**
 * How far `tasks` trails the outcomes: a master and R runner processes on the embedded database (or
 * MONGO_URL), a collection pre-filled to `--docs` final tasks, and a feeder adding `--rate` tasks/s
 * for `--seconds`. A poller reads `tasks` every `--poll` ms for the outcomes delivered so far; a
 * task's lag is the time from its outcome reaching the feeder to its final state being read back.
 * Prints p50/p99/max lag (the poll interval bounds the error), throughput, and the database
 * commands and documents the master wrote per task.
 *
 *   npm run bench:lag -- [--rate 500] [--seconds 60] [--docs 100000] [--runners 2] [--poll 50]
 */
import { parseArgs } from 'node:util';
import mongoose from 'mongoose';
import { Feeder } from '../feeder/feeder';
import { freePort } from '../db/server';
import type { TaskOutcome } from '../protocol/schemas';
import { spawnTethered, type Tethered } from './peer/processes';
import { benchDatabase, masterArgs, runBench, runnerArgs } from './run';

const { values: args } = parseArgs({
  options: {
    rate: { type: 'string', default: '500' },
    seconds: { type: 'string', default: '60' },
    docs: { type: 'string', default: '100000' },
    runners: { type: 'string', default: '2' },
    poll: { type: 'string', default: '50' },
  },
});

function pct(sorted: number[], p: number): number {
  return sorted.length === 0
    ? NaN
    : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

async function main(): Promise<void> {
  const rate = Number(args.rate);
  const seconds = Number(args.seconds);
  const docs = Number(args.docs);
  const pollMs = Number(args.poll);
  const db = await benchDatabase();
  const children: Tethered[] = [];
  const dbName = `benchlag_${Date.now()}`;
  const conn = await mongoose.createConnection(db.url, { dbName }).asPromise();
  try {
    const tasks = conn.collection<{ _id: string; state: string }>('tasks');
    // Pre-fill: final tasks as the master writes them.
    const now = Date.now();
    for (let i = 0; i < docs; i += 1000) {
      await tasks.insertMany(
        Array.from({ length: Math.min(1000, docs - i) }, (_, k) => ({
          _id: `old-${i + k}`,
          batch: 'old',
          module: 'noop',
          params: [],
          state: 'done',
          attempts: 1,
          maxAttempts: 3,
          created: now,
          updated: now,
          rev: 3,
          assigned: { who: 'r', when: now, completed: now },
          result: null,
        })),
      );
    }
    process.stderr.write(`pre-filled ${docs} tasks\n`);
    const port = await freePort();
    const env = { ...process.env, TASKMASTER_LOG_FORMAT: 'json', TASKMASTER_LOG_LEVEL: 'warn' };
    const url = new URL(db.url);
    url.pathname = `/${dbName}`;
    const master = await spawnTethered(process.execPath, masterArgs(port, url.toString()), env);
    children.push(master);
    await master.waitFor(/master listening/, 'master');
    const masterUrl = `http://127.0.0.1:${port}`;
    for (let i = 0; i < Number(args.runners); i++) {
      const r = await spawnTethered(process.execPath, runnerArgs(masterUrl, 1, 32), env);
      children.push(r);
      await r.waitFor(/runner (ready|registered|connected)/i, `runner ${i}`);
    }

    const feeder = new Feeder({ master: masterUrl });
    await feeder.ready();
    const delivered = new Map<string, number>();
    const unconfirmed = new Set<string>();
    const lags: number[] = [];
    feeder.on('result', (o: TaskOutcome) => {
      delivered.set(o.id, Date.now());
      unconfirmed.add(o.id);
    });

    let polling = true;
    const poller = (async () => {
      while (polling || unconfirmed.size > 0) {
        const ids = [...unconfirmed].slice(0, 5000);
        if (ids.length > 0) {
          const found = await tasks
            .find(
              { _id: { $in: ids }, state: { $in: ['done', 'failed', 'cancelled'] } },
              { projection: { _id: 1 } },
            )
            .toArray();
          const at = Date.now();
          for (const d of found) {
            unconfirmed.delete(d._id);
            lags.push(at - (delivered.get(d._id) as number));
          }
        }
        await new Promise((r) => setTimeout(r, pollMs));
      }
    })();

    // Open loop: every 10 ms, the tasks due by now.
    const t0 = Date.now();
    let sent = 0;
    let n = 0;
    const adds: Promise<unknown>[] = [];
    while (Date.now() - t0 < seconds * 1000) {
      const due = Math.floor(((Date.now() - t0) / 1000) * rate);
      if (due > sent) {
        const count = due - sent;
        sent = due;
        adds.push(feeder.add(Array.from({ length: count }, () => ({ id: `n-${n++}`, module: 'noop' }))));
      }
      await new Promise((r) => setTimeout(r, 10));
    }
    await Promise.all(adds);
    while (delivered.size < sent) await new Promise((r) => setTimeout(r, 20));
    const elapsed = (Date.now() - t0) / 1000;
    polling = false;
    await poller;
    const status = (await (await fetch(`${masterUrl}/api/status`)).json()) as {
      store?: { commands: number; documents: number };
    };
    lags.sort((a, b) => a - b);
    process.stdout.write(
      `${JSON.stringify({
        rate,
        seconds,
        collectionDocs: docs + sent,
        tasks: sent,
        tasksPerSecond: Math.round(sent / elapsed),
        lagP50Ms: pct(lags, 50),
        lagP99Ms: pct(lags, 99),
        lagMaxMs: lags[lags.length - 1],
        pollMs,
        dbCommandsPerTask: status.store ? Number((status.store.commands / sent).toFixed(2)) : null,
        dbDocumentsPerTask: status.store ? Number((status.store.documents / sent).toFixed(2)) : null,
        database: db.kind,
      })}\n`,
    );
    await feeder.close();
  } finally {
    await Promise.all(children.map((c) => c.stop()));
    await conn.dropDatabase().catch(() => undefined);
    await conn.close();
    await db.stop();
  }
}

runBench(main);

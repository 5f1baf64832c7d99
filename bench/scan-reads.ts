/**
 * What reads that scan cost the write path: a master process on the embedded database (or
 * MONGO_URL) with `--docs` stored final tasks, and a feeder adding one task at a time for
 * `--adds` adds, measuring each add's acknowledgement. Three rounds: no readers; `--readers`
 * read-only clients looping over text filters and unknown batches with the default `--max-scans`
 * (2); the same with `--max-scans 1000` (no bound, as before it existed). Prints p50/p99/max
 * add-ack latency per round, and the readers' answers (served, refused with EBUSY).
 *
 *   npm run bench:scans -- [--docs 20000] [--adds 200] [--readers 8]
 */
import { parseArgs } from 'node:util';
import mongoose from 'mongoose';
import { Feeder } from '../feeder/feeder';
import { freePort } from '../db/server';
import { spawnTethered, type Tethered } from './peer/processes';
import { benchDatabase, masterArgs, runBench } from './run';

const { values: args } = parseArgs({
  options: {
    docs: { type: 'string', default: '20000' },
    adds: { type: 'string', default: '200' },
    readers: { type: 'string', default: '8' },
  },
});

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

interface Round {
  round: string;
  p50: number;
  p99: number;
  max: number;
  served: number;
  busy: number;
}

async function main(): Promise<void> {
  const docs = Number(args.docs);
  const db = await benchDatabase();
  const rounds: Round[] = [];
  const n = Number(args.readers);
  for (const [round, readers, extra] of [
    ['no readers', 0, []],
    ['1 reader', 1, []],
    [`${n} readers, --max-scans 2`, n, []],
    [`${n} readers, --max-scans 1`, n, ['--max-scans', '1']],
    [`${n} readers, no bound`, n, ['--max-scans', '1000']],
  ] as [string, number, string[]][]) {
    const dbName = `benchscans_${Date.now()}`;
    const conn = await mongoose.createConnection(db.url, { dbName }).asPromise();
    const now = Date.now();
    for (let i = 0; i < docs; i += 1000)
      await conn.collection('tasks').insertMany(
        Array.from({ length: Math.min(1000, docs - i) }, (_, k) => ({
          _id: `old-${i + k}` as never,
          batch: `old-${(i + k) % 4}`,
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
    const port = await freePort();
    const url = new URL(db.url);
    url.pathname = `/${dbName}`;
    const env = { ...process.env, TASKMASTER_LOG_FORMAT: 'json', TASKMASTER_LOG_LEVEL: 'warn' };
    let master: Tethered | null = null;
    try {
      master = await spawnTethered(process.execPath, masterArgs(port, url.toString(), extra), env);
      // Its start reads the stored batches for the dashboard: scans too, slow on FerretDB.
      await master.waitFor(/master listening/, 'master', 300_000);
      const base = `http://127.0.0.1:${port}`;
      const feeder = new Feeder({ master: base });
      await feeder.ready();
      let stop = false;
      let served = 0;
      let busy = 0;
      const loop = async (r: number) => {
        for (let i = 0; !stop; i++) {
          const path = i % 2 === 0 ? `/api/tasks?q=nothing-${r}-${i}` : `/api/batches/unknown-${r}-${i}`;
          const res = await fetch(new URL(path, base)).catch(() => null);
          await res?.arrayBuffer();
          if (res?.status === 503) {
            busy++;
            // As a client that honours the answer's retryAfterMs would.
            await new Promise((r) => setTimeout(r, 500));
          } else served++;
        }
      };
      const loops = Array.from({ length: readers }, (_, r) => loop(r));
      const lat: number[] = [];
      for (let i = 0; i < Number(args.adds); i++) {
        const began = performance.now();
        await feeder.add([{ module: 'noop' }]);
        lat.push(performance.now() - began);
      }
      stop = true;
      await Promise.all(loops);
      await feeder.close();
      lat.sort((a, b) => a - b);
      const ms = (v: number) => Math.round(v * 10) / 10;
      rounds.push({
        round,
        p50: ms(pct(lat, 50)),
        p99: ms(pct(lat, 99)),
        max: ms(lat[lat.length - 1]),
        served,
        busy,
      });
      process.stderr.write(`${JSON.stringify(rounds[rounds.length - 1])}\n`);
    } finally {
      await master?.stop();
      await conn.dropDatabase();
      await conn.close();
    }
  }
  console.log(`add-ack latency (ms), ${docs} stored tasks, ${args.adds} one-task adds, one after the other`);
  console.table(rounds);
  await db.stop();
}

runBench(main);

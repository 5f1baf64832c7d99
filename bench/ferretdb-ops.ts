/**
 * Wire-level figures of the embedded FerretDB on a collection of `--docs` documents (default 100,000):
 * insertMany docs/s, bulk `updateOne({_id}, {$set})` ops/s, the median of single `updateOne({_id})`
 * round trips, bulk updates beside a stream of inserts on another connection (`--concurrent-updates`,
 * 0 to skip), `find({_id: {$in: 1000 ids}})` and `deleteMany({_id: {$in: 1000 ids}})` in ms.
 *
 *   npm run bench:db                                   the patched build (.cache/bin/ferretdb-…-pN)
 *   npm run bench:db -- --bin .cache/bin/ferretdb-1.24.2-stock --updates 20 --per-command 20 --concurrent-updates 0
 *   npm run bench:db -- --synchronous normal           SQLite synchronous=NORMAL (see docs/architecture.md, Durability)
 *
 * The stock build scans the collection for every `_id` lookup and leaks a connection per statement
 * of an update command (100 per database, then it hangs), hence the small `--updates` for it.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import mongoose from 'mongoose';
import { databaseLine, startEmbeddedDatabase, type Synchronous } from '../db/server';
import { runBench } from './run';

const { values } = parseArgs({
  options: {
    bin: { type: 'string' },
    docs: { type: 'string', default: '100000' },
    updates: { type: 'string', default: '20000' },
    'per-command': { type: 'string', default: '1000' },
    synchronous: { type: 'string', default: 'full' },
    'concurrent-updates': { type: 'string', default: '10000' },
    'deadline-s': { type: 'string', default: '600' },
  },
});
const DOCS = Number(values.docs);
const UPDATES = Number(values.updates);
const PER_COMMAND = Number(values['per-command']);
const SYNCHRONOUS = values.synchronous as Synchronous;
const CONCURRENT = Number(values['concurrent-updates']);
const CHUNK = 1000;

const idOf = (i: number): string => `task-${String(i).padStart(7, '0')}`;

function doc(i: number) {
  return {
    _id: idOf(i),
    batch: `batch-${i % 100}`,
    module: 'example',
    params: [i, 'some text of the size of a typical parameter'],
    priority: i % 10,
    state: 'ready',
    rev: 0,
    created: new Date(),
  };
}

const ms = (t: bigint): number => Number(process.hrtime.bigint() - t) / 1e6;

/** The FerretDB process serving dataDir (a child of the watchdog), found by its command line. */
function serverPid(dataDir: string): number | undefined {
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const argv = fs.readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
      if (!argv[0].endsWith('node') && argv.some((a) => a.startsWith(`--sqlite-url=file:${dataDir}/`))) {
        return Number(entry);
      }
    } catch {
      // gone meanwhile
    }
  }
  return undefined;
}

/** CPU time (user + system) of a process in ms, from /proc; 0 where /proc is missing. */
function cpuMs(pid: number | undefined): number {
  if (pid === undefined) return 0;
  const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  // utime and stime are fields 14 and 15 of stat, in clock ticks (100 per second on Linux).
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

async function main(): Promise<void> {
  // Nothing here may hang: the stock build can stall on a long update command.
  setTimeout(
    () => {
      process.stderr.write(`bench:db gave up after ${values['deadline-s']} s\n`);
      process.exit(1);
    },
    Number(values['deadline-s']) * 1000,
  ).unref();

  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'taskmaster-bench-db-'));
  const db = await startEmbeddedDatabase({
    dataDir,
    ferretdbBin: values.bin && path.resolve(values.bin),
    synchronous: SYNCHRONOUS,
  });
  const client = new mongoose.mongo.MongoClient(db.url, { directConnection: true });
  try {
    await client.connect();
    const coll = client.db('bench').collection<ReturnType<typeof doc>>('tasks');
    const bin = values.bin ?? 'patched build';
    process.stdout.write(`FerretDB ${bin}, synchronous=${SYNCHRONOUS}, ${DOCS} documents\n`);
    process.stderr.write(`database: ${databaseLine(db)} (removed at the end)\n`);
    const pid = serverPid(dataDir);

    let t = process.hrtime.bigint();
    let cpu = cpuMs(pid);
    for (let i = 0; i < DOCS; i += CHUNK) {
      const docs = [];
      for (let j = i; j < Math.min(i + CHUNK, DOCS); j++) docs.push(doc(j));
      await coll.insertMany(docs, { ordered: true });
    }
    const insertMs = ms(t);
    out('insertMany (chunks of 1000)', `${Math.round(DOCS / (insertMs / 1000))} docs/s`, insertMs);
    out('  FerretDB CPU per inserted document', `${((cpuMs(pid) - cpu) / DOCS).toFixed(3)} ms`);

    // Spread over the whole collection so no page cache trick flatters the figure.
    const step = Math.max(1, Math.floor(DOCS / UPDATES));
    t = process.hrtime.bigint();
    cpu = cpuMs(pid);
    for (let done = 0; done < UPDATES; done += PER_COMMAND) {
      const ops = [];
      for (let k = done; k < Math.min(done + PER_COMMAND, UPDATES); k++) {
        ops.push({
          updateOne: {
            // The shape of a fenced state change: the revision in the filter, bumped by the update.
            filter: { _id: idOf((k * step) % DOCS), rev: { $lt: 1_000_000 } },
            update: { $set: { state: 'completed' }, $inc: { rev: 1 } },
          },
        });
      }
      const res = await coll.bulkWrite(ops, { ordered: true });
      if (res.matchedCount !== ops.length) throw new Error(`matched ${res.matchedCount} of ${ops.length}`);
    }
    const updateMs = ms(t);
    out(
      `bulk updateOne {_id, rev:{$lt}} $inc (${PER_COMMAND}/command)`,
      `${Math.round(UPDATES / (updateMs / 1000))} ops/s`,
      updateMs,
    );
    out('  FerretDB CPU per update statement', `${((cpuMs(pid) - cpu) / UPDATES).toFixed(3)} ms`);

    const singles: number[] = [];
    for (let k = 0; k < Math.min(50, UPDATES); k++) {
      const s = process.hrtime.bigint();
      await coll.updateOne({ _id: idOf((k * 7919) % DOCS) }, { $set: { state: 'running' } });
      singles.push(ms(s));
    }
    singles.sort((a, b) => a - b);
    out(`updateOne({_id}) median of ${singles.length}`, `${singles[singles.length >> 1].toFixed(2)} ms`);

    if (CONCURRENT > 0) await updatesBesideInserts(coll, client, step);

    const ids = Array.from({ length: 1000 }, (_, k) => idOf((k * 97) % DOCS));
    t = process.hrtime.bigint();
    const found = await coll.find({ _id: { $in: ids } }).toArray();
    out('find {_id: {$in: 1000 ids}}', `${found.length} docs`, ms(t));

    t = process.hrtime.bigint();
    const deleted = await coll.deleteMany({ _id: { $in: ids } });
    out('deleteMany {_id: {$in: 1000 ids}}', `${deleted.deletedCount} docs`, ms(t));
  } finally {
    await client.close();
    await db.stop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
}

/**
 * The master's mix: bulk updates on one connection while another inserts batches of 100 into another
 * collection. Prints the update rate and how long the inserts waited.
 */
async function updatesBesideInserts(
  coll: mongoose.mongo.Collection<ReturnType<typeof doc>>,
  client: InstanceType<typeof mongoose.mongo.MongoClient>,
  step: number,
): Promise<void> {
  const other = new mongoose.mongo.MongoClient(
    client.options.hosts.map((h) => `mongodb://${h.toString()}/`)[0],
    {
      directConnection: true,
    },
  );
  await other.connect();
  try {
    const events = other.db('bench').collection('events');
    let running = true;
    const waits: number[] = [];
    const inserter = (async () => {
      for (let n = 0; running;) {
        const s = process.hrtime.bigint();
        await events.insertMany(
          Array.from({ length: 100 }, () => ({ n: n++, at: new Date(), kind: 'completed' })),
        );
        waits.push(ms(s));
      }
    })();
    const t = process.hrtime.bigint();
    for (let done = 0; done < CONCURRENT; done += PER_COMMAND) {
      const ops = [];
      for (let k = done; k < Math.min(done + PER_COMMAND, CONCURRENT); k++) {
        const filter = { _id: idOf((k * step + 1) % DOCS), rev: { $lt: 1_000_000 } };
        ops.push({ updateOne: { filter, update: { $inc: { rev: 1 } } } });
      }
      await coll.bulkWrite(ops, { ordered: true });
    }
    const updateMs = ms(t);
    running = false;
    await inserter;
    waits.sort((a, b) => a - b);
    const at = (q: number) => waits[Math.min(waits.length - 1, Math.floor(q * waits.length))].toFixed(0);
    out(
      `the same, beside insertMany(100) on another connection`,
      `${Math.round(CONCURRENT / (updateMs / 1000))} ops/s`,
      updateMs,
    );
    out(
      '  insertMany(100) meanwhile',
      `${waits.length} calls, p50 ${at(0.5)} ms, p99 ${at(0.99)} ms, max ${at(1)} ms`,
    );
  } finally {
    await other.close();
  }
}

function out(what: string, figure: string, elapsedMs?: number): void {
  const took = elapsedMs === undefined ? '' : `  (${elapsedMs.toFixed(0)} ms)`;
  process.stdout.write(`${what.padEnd(56)} ${figure}${took}\n`);
}

runBench(main);

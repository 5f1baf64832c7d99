/**
 * `taskmaster demo`: the whole system on one machine. A database (MONGO_URL, else an embedded one in
 * a temporary folder), a master on a free port, a runner with two workers on `<repo>/tasks`, and
 * `tasks/example-batch.json` fed and waited for. Prints progress and every result, stops everything,
 * and returns 0 only when every task is done. Bounded: it gives up after `timeoutMs`.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import mongoose from 'mongoose';
import type { Logger } from '../common/logger';
import { readBatch } from '../feeder/batch-file';
import { Feeder } from '../feeder/feeder';
import { batchProgress } from '../feeder/progress';
import { Master } from '../master/master';
import { databaseLine, resolveDatabase, type Database } from '../db/server';
import type { TaskInput, TaskOutcome } from '../protocol/schemas';
import { Runner } from '../runner/runner';
import { packageRoot } from '../common/package-root';
import { shutdown, watchSignals } from './signals';

const REPO = packageRoot();

export interface DemoOptions {
  logger: Logger;
  /** Where the story goes. Default stdout. */
  out?: NodeJS.WritableStream;
  /** Where progress goes. Default stderr. */
  err?: NodeJS.WritableStream & { isTTY?: boolean };
  /** Give up on the batch after this long. Default 120 000 ms. */
  timeoutMs?: number;
}

export async function runDemo({
  logger,
  out = process.stdout,
  err = process.stderr,
  timeoutMs = 120_000,
}: DemoOptions): Promise<number> {
  const say = (s = '') => void out.write(`${s}\n`);
  const tasksDir = path.join(REPO, 'tasks');
  const batchFile = path.join(tasksDir, 'example-batch.json');
  const { tasks } = await readBatch(batchFile);
  const dbName = `taskmaster_demo_${Date.now()}`;
  const signalled = watchSignals((m) => say(m));

  let dataDir: string | null = null;
  let db: Database | null = null;
  let master: Master | null = null;
  let runner: Runner | null = null;
  let feeder: Feeder | null = null;
  const cleanup = async () => {
    const steps: (() => Promise<void>)[] = [
      async () => void (await feeder?.close()),
      async () => void (await runner?.close()),
      async () => void (await master?.close()),
    ];
    // An external server keeps nothing of the demo; an embedded one goes away with its folder.
    if (db?.kind === 'external') steps.push(() => dropDatabase((db as Database).url, dbName));
    steps.push(async () => void (await db?.stop()));
    if (dataDir) steps.push(async () => fs.rmSync(dataDir as string, { recursive: true, force: true }));
    return shutdown(steps, (m) => logger.warn(m));
  };

  const run = async (): Promise<number> => {
    if (!process.env.MONGO_URL) {
      dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'taskmaster-demo-'));
      say('starting an embedded database…');
    }
    db = await resolveDatabase({ dataDir: dataDir ?? undefined, log: (m) => logger.info(m) });
    say(`database  ${databaseLine(db)} (database ${dbName}; ${dataDir ? 'removed' : 'dropped'} at the end)`);

    master = new Master({ mongoUrl: db.url, dbName, port: 0, logger });
    await master.start();
    say(`master    ${master.url}`);

    runner = new Runner({ master: master.url, tasks: [tasksDir], workers: 2, watch: false, logger });
    await runner.start();
    say(
      `runner    ${runner.runnerId}: 2 workers, task modules from ${path.relative(process.cwd(), tasksDir) || '.'}`,
    );

    feeder = new Feeder({ master: master.url, logger });
    say(
      `feeding   ${tasks.length} tasks from ${path.relative(process.cwd(), batchFile)} (priorities and a dependency chain)`,
    );
    const t0 = Date.now();
    const progress = batchProgress(tasks.length, err, { intervalMs: 1000 });
    // Tasks report their own progress as a fraction; the bar moves with it.
    feeder.on('progress', (p) => progress.task(p.id, p.progress));
    const finished: { outcome: TaskOutcome; ms: number }[] = [];
    let outcomes: TaskOutcome[] | null;
    try {
      outcomes = await withTimeout(
        feeder.work(tasks as TaskInput[], {
          onResult: (o) => {
            progress.add(o);
            finished.push({ outcome: o, ms: Date.now() - t0 });
          },
        }),
        timeoutMs,
      );
    } finally {
      progress.stop();
    }

    say('\nresults, in the order they finished:');
    const width = Math.max(...tasks.map((t, i) => String((t as { id?: unknown }).id ?? i).length));
    for (const { outcome: o, ms } of finished) {
      const shown =
        o.state === 'done' ? JSON.stringify(o.result) : `${o.error?.code ?? ''} ${o.error?.message ?? ''}`;
      say(`  ${`${ms} ms`.padStart(8)}  ${o.id.padEnd(width)}  ${o.state.padEnd(9)} ${shown}`);
    }
    if (!outcomes) {
      const open = tasks.length - finished.length;
      say(`\ngave up after ${timeoutMs / 1000} s with ${open} task${open === 1 ? '' : 's'} unfinished`);
      return 1;
    }
    const done = outcomes.filter((o) => o.state === 'done').length;
    say(`\n${done} of ${outcomes.length} tasks done in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    return done === outcomes.length ? 0 : 1;
  };

  try {
    const code = await Promise.race([run(), signalled.then(() => 130)]);
    const cleaned = await cleanup();
    return code || cleaned;
  } catch (e) {
    await cleanup();
    throw e;
  }
}

/** Resolves with the value, or null if it takes longer than `ms`. */
function withTimeout<T>(p: Promise<T>, ms: number): Promise<T | null> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), ms)));
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

async function dropDatabase(url: string, dbName: string): Promise<void> {
  const conn = await mongoose.createConnection(url, { dbName, serverSelectionTimeoutMS: 5000 }).asPromise();
  try {
    await conn.dropDatabase();
  } finally {
    await conn.close();
  }
}

/**
 * `taskmaster demo`: the whole system on one machine — the embedded database (or MONGO_URL), a master
 * on a free port, a runner with two workers on `tasks/`, and `tasks/example-batch.json` fed and
 * waited for. Prints progress and results, cleans up, and exits 0 when every task is done.
 */
import path from 'node:path';
import type { Logger } from '../common/logger';
import { readBatch } from '../feeder/batch-file';
import { Feeder } from '../feeder/feeder';
import { Master } from '../master/master';
import { REPO_ROOT, resolveDatabase } from '../models/database';
import type { TaskInput } from '../protocol/schemas';
import { Runner } from '../runner/runner';

export async function runDemo({
  logger,
  out = process.stdout,
}: {
  logger: Logger;
  out?: NodeJS.WritableStream;
}): Promise<number> {
  const say = (s: string) => out.write(`${s}\n`);
  const tasksDir = path.join(REPO_ROOT, 'tasks');
  say('starting the database…');
  const db = await resolveDatabase({ log: (m) => say(m) });
  const master = new Master({ mongoUrl: db.url, dbName: `taskmaster_demo_${Date.now()}`, port: 0, logger });
  let runner: Runner | null = null;
  let feeder: Feeder | null = null;
  try {
    await master.start();
    say(`master on ${master.url} (database: ${db.kind})`);
    runner = new Runner({ master: master.url, tasks: [tasksDir], workers: 2, slots: 4, logger });
    await runner.start();
    say(`runner ${runner.runnerId} with 2 workers on ${tasksDir}`);
    feeder = new Feeder({ master: master.url, logger });
    const batch = (await readBatch(path.join(tasksDir, 'example-batch.json'))) as TaskInput[];
    say(`feeding ${batch.length} tasks (priorities and a dependency chain)…`);
    const t0 = Date.now();
    const outcomes = await feeder.work(batch, {
      onResult: (o) =>
        say(`  ${o.state === 'done' ? '✓' : '✗'} ${o.id} (${((Date.now() - t0) / 1000).toFixed(1)} s)`),
    });
    say('\nresults:');
    for (const o of outcomes)
      say(
        `  ${o.id}: ${o.state === 'done' ? JSON.stringify(o.result) : `${o.error?.code} ${o.error?.message}`}`,
      );
    const failed = outcomes.filter((o) => o.state !== 'done').length;
    say(`\n${outcomes.length - failed} done, ${failed} failed in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    return failed > 0 ? 1 : 0;
  } finally {
    await feeder?.close();
    await runner?.close();
    await master.close();
    await db.stop();
  }
}

/**
 * The master alone: N no-op tasks through an in-process master and a protocol-level runner that
 * answers every assignment at once (no child processes), on the embedded database or MONGO_URL.
 * Measures what the scheduler and the write-through cost per task.
 *
 *   npm run bench:master -- [--tasks 10000] [--slots 64]
 */
import { parseArgs } from 'node:util';
import { io } from 'socket.io-client';
import { silentLogger } from '../common/logger';
import { Master } from '../master/master';
import type { Assignment } from '../protocol/schemas';
import { benchDatabase, runBench } from './run';

const { values: args } = parseArgs({
  options: { tasks: { type: 'string', default: '10000' }, slots: { type: 'string', default: '64' } },
});

async function main(): Promise<void> {
  const n = Number(args.tasks);
  const db = await benchDatabase();
  const master = new Master({
    mongoUrl: db.url,
    dbName: `bench_master_${Date.now()}`,
    port: 0,
    logger: silentLogger(),
  });
  await master.start();
  const runner = io(`${master.url}/runner`, { transports: ['websocket'] });
  const feeder = io(`${master.url}/feeder`, { transports: ['websocket'] });
  try {
    runner.on('task:assign', ({ tasks }: { tasks: Assignment[] }) => {
      const refs = tasks.map((t) => ({ id: t.id, attempt: t.attempt }));
      runner.emit('task:started', { tasks: refs });
      runner.emit(
        'task:results',
        { results: refs.map((r) => ({ ...r, ok: true, result: null })) },
        () => undefined,
      );
    });
    await runner.emitWithAck('runner:hello', { runnerId: 'bench', slots: Number(args.slots), workers: 1 });
    let done = 0;
    const all = new Promise<void>((resolve) =>
      feeder.on('task:outcomes', ({ outcomes }: { outcomes: unknown[] }) => {
        done += outcomes.length;
        if (done >= n) resolve();
      }),
    );
    const t0 = Date.now();
    const reply = (await feeder.emitWithAck('tasks:add', {
      tasks: Array.from({ length: n }, () => ({ module: 'noop' })),
    })) as {
      ok: boolean;
    };
    if (!reply.ok) throw new Error(`add refused: ${JSON.stringify(reply)}`);
    const addMs = Date.now() - t0;
    await all;
    const seconds = (Date.now() - t0) / 1000;
    process.stdout.write(
      `${JSON.stringify({
        tasks: n,
        database: db.kind,
        addMs,
        seconds: Number(seconds.toFixed(2)),
        tasksPerSecond: Math.round(n / seconds),
        rssMb: Math.round(process.memoryUsage().rss / 1e6),
      })}\n`,
    );
  } finally {
    runner.close();
    feeder.close();
    await master.close();
    await db.stop();
  }
}

runBench(main);

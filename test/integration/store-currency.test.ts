import mongoose from 'mongoose';
import type { Feeder } from '../../feeder/feeder';
import type { Master } from '../../master/master';
import type { TaskOutcome } from '../../protocol/schemas';
import type { Runner } from '../../runner/runner';
import { spawnCli, startMaster } from '../helpers/cluster';
import { testDbName, testDbUrl } from '../helpers/db';
import { startFeeder, startRunner } from '../helpers/clients';
import { eventually } from '../helpers/wait';

/** `tasks` follows the outcomes while load goes on; journal, retention and purge keep growth bounded. */
describe('tasks current and bounded', () => {
  const cleanup: (() => Promise<unknown> | unknown)[] = [];
  afterEach(async () => {
    for (const c of cleanup.splice(0).reverse()) await c();
  });

  async function cluster(label: string, opts: Parameters<typeof startMaster>[1] = {}) {
    const dbName = testDbName(label);
    const master: Master = await startMaster(dbName, opts);
    cleanup.push(() => master.close());
    const runner: Runner = await startRunner(master.url, { workers: 2, slots: 16 });
    cleanup.push(() => runner.close());
    const feeder: Feeder = await startFeeder(master.url);
    cleanup.push(() => feeder.close());
    const conn = await mongoose.createConnection(testDbUrl(dbName)).asPromise();
    cleanup.push(() => conn.close());
    return { master, runner, feeder, conn, tasks: conn.collection<{ _id: string; state: string }>('tasks') };
  }

  test('final states reach tasks within a second while load continues: the folder is not starved', async () => {
    const { feeder, tasks, master, conn } = await cluster('current');
    const loadEnds = Date.now() + 4000;
    const lags: Promise<number>[] = [];
    let seen = 0;
    feeder.on('result', (o: TaskOutcome) => {
      // Every 10th outcome that arrives while load goes on is watched until `tasks` shows it.
      if (seen++ % 10 !== 0 || Date.now() > loadEnds - 1500) return;
      const at = Date.now();
      lags.push(
        (async () => {
          for (;;) {
            const d = await tasks.findOne({ _id: o.id, state: 'done' });
            if (d) return Date.now() - at;
            if (Date.now() - at > 1500) throw new Error(`${o.id} not final in tasks 1.5 s after its outcome`);
            await new Promise((r) => setTimeout(r, 20));
          }
        })(),
      );
    });
    // 20 tasks every 20 ms for 4 s: the writer is never idle for long.
    let n = 0;
    const work: Promise<unknown>[] = [];
    while (Date.now() < loadEnds) {
      work.push(
        feeder.work(Array.from({ length: 20 }, () => ({ id: `c${n}`, module: 'ok', params: [`c${n++}`] }))),
      );
      await new Promise((r) => setTimeout(r, 20));
    }
    await Promise.all(work);
    expect((await Promise.all(lags)).length).toBeGreaterThan(10);
    // After the load, everything is in `tasks` and the journal is empty again.
    await master.flushed();
    expect(await tasks.countDocuments({ state: 'done' })).toBe(n);
    expect(await conn.collection('task_journal').countDocuments({})).toBe(0);
  });

  test('retention removes final tasks after --retain, and their ids can be used again', async () => {
    const { feeder, tasks, master } = await cluster('retain', { retainMs: 300 });
    expect(await feeder.work([{ id: 'again', module: 'ok', params: [1] }])).toMatchObject([
      { state: 'done' },
    ]);
    await expect(feeder.add([{ id: 'again', module: 'ok' }])).rejects.toMatchObject({ code: 'EVALIDATION' });
    await master.flushed(); // its document is in `tasks` (the folder inserts it just after the outcome)
    expect(await tasks.countDocuments({ _id: 'again' })).toBe(1);
    // The first pass runs within ~5 s of the start; the next ones every second.
    await eventually(async () => (await tasks.countDocuments({ _id: 'again' })) === 0, {
      timeout: 15_000,
      what: 'retention removed the final task "again"',
    });
    const fresh = await startFeeder(master.url);
    cleanup.push(() => fresh.close());
    expect(await fresh.work([{ id: 'again', module: 'ok', params: [2] }])).toMatchObject([
      { state: 'done', result: [2] },
    ]);
    expect(master.storeStatus()).toMatchObject({ writeBacklog: 0 });
  });

  test('taskmaster purge --batch B --state failed removes those tasks only; the batch can then be fed again', async () => {
    const { feeder, tasks, master } = await cluster('purge', { retainMs: null });
    await feeder.work(
      [
        { id: 'p-ok', module: 'ok' },
        { id: 'p-bad', module: 'throws', maxAttempts: 1 },
      ],
      { batch: 'nightly' },
    );
    await feeder.work([{ id: 'other-bad', module: 'throws', maxAttempts: 1 }], { batch: 'other' });
    await master.flushed();
    const cli = await runCli(['purge', '--master', master.url, '--batch', 'nightly', '--state', 'failed']);
    expect(cli).toEqual({ code: 0, output: 'purged 1 tasks\n' });
    expect((await tasks.find({}).toArray()).map((d) => d._id).sort()).toEqual(['other-bad', 'p-ok']);
    const fresh = await startFeeder(master.url);
    cleanup.push(() => fresh.close());
    expect(await fresh.work([{ id: 'p-bad', module: 'ok' }], { batch: 'nightly' })).toMatchObject([
      { state: 'done' },
    ]);
    const bad = await runCli(['purge', '--master', master.url, '--state', 'running']);
    expect(bad.code).not.toBe(0);
    expect(bad.output).toContain('state');
  });
});

/** Runs the CLI without blocking this process (the master under test runs in it). */
async function runCli(args: string[]): Promise<{ code: number | null; output: string }> {
  const p = spawnCli(args);
  const code = await p.exit();
  return { code, output: p.output() };
}

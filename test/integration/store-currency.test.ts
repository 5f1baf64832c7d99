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

  test('final states reach tasks while load continues, and every one is there once it stops: the folder is not starved', async () => {
    // How quickly they get there is bench:lag's to measure; here, only that they do while the
    // writer is kept busy: the load stops once 10 sampled outcomes are in `tasks`, or after MAX_ROUNDS.
    const MAX_ROUNDS = 2000;
    const { feeder, tasks, master, conn } = await cluster('current');
    const sampled: string[] = [];
    let seen = 0;
    feeder.on('result', (o: TaskOutcome) => {
      if (seen++ % 10 === 0 && sampled.length < 10) sampled.push(o.id);
    });
    let rounds = 0;
    let inTasks = 0;
    const ids: string[] = [];
    const watching = (async () => {
      for (let i = 0; i < 10; i++) {
        await eventually(() => sampled[i] ?? false, { timeout: 60_000, what: `sampled outcome ${i}` });
        await eventually(async () => (await tasks.findOne({ _id: sampled[i], state: 'done' })) !== null, {
          timeout: 60_000,
          what: `task ${sampled[i]} done in tasks`,
        });
        inTasks++;
      }
    })();
    // Rounds of 20 single-task adds, each round once the previous one is acknowledged.
    while (inTasks < 10 && rounds < MAX_ROUNDS) {
      const round = Array.from({ length: 20 }, (_, i) => ({
        id: `c${rounds}-${i}`,
        module: 'ok',
        params: [`c${rounds}-${i}`],
      }));
      ids.push(...(await feeder.add(round)).map((r) => r.id));
      rounds++;
    }
    await watching;
    expect({ inTasksWhileLoaded: inTasks, stoppedByCap: rounds >= MAX_ROUNDS }).toEqual({
      inTasksWhileLoaded: 10,
      stoppedByCap: false,
    });
    await feeder.wait(ids);
    // After the load, every final state is in `tasks` and the journal is empty again.
    await master.flushed();
    expect(await tasks.countDocuments({ state: 'done' })).toBe(ids.length);
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

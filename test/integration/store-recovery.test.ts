import mongoose from 'mongoose';
import { io } from 'socket.io-client';
import type { Master } from '../../master/master';
import { freePort, spawnCli, startMaster, type Proc } from '../helpers/cluster';
import { testDbName, testDbUrl } from '../helpers/db';
import { rawFeeder, rawRunner } from '../helpers/raw-clients';

/** What a restarted master makes of what it finds in the database. */
describe('recovery after a restart', () => {
  const cleanup: (() => Promise<unknown> | unknown)[] = [];
  afterEach(async () => {
    for (const c of cleanup.splice(0).reverse()) await c();
  });

  test('SIGKILL right after a 10,000-task add is durable, before its tasks are in `tasks`: the restarted master has all of it, and an acknowledged add completes', async () => {
    const dbName = testDbName('addkill');
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const conn = await mongoose.createConnection(testDbUrl(dbName)).asPromise();
    cleanup.push(() => conn.close());
    const tasks = conn.collection<{ _id: string; state: string }>('tasks');
    const journal = conn.collection<{ _id: string; adds?: string }>('task_journal');
    const masters: Proc[] = [];
    cleanup.push(async () => {
      for (const m of masters) await m.kill('SIGKILL');
    });
    const start = async () => {
      const p = spawnCli(['master', '--port', String(port), '--mongo-url', testDbUrl(dbName)]);
      masters.push(p);
      await p.waitFor(/master listening/);
      return p;
    };
    const first = await start();
    const feeder = await rawFeeder(url);
    cleanup.push(() => feeder.close());
    const acked = await feeder.add(
      Array.from({ length: 10 }, (_, i) => ({ id: `acked-${i}`, module: 'ok' })),
    );
    expect(acked.ok).toBe(true);

    void feeder
      .add(Array.from({ length: 10_000 }, (_, i) => ({ id: `big-${i}`, module: 'ok', params: [i] })))
      .catch(() => undefined);
    // Kill as soon as the big add is in the journal: one document holds all of it.
    const deadline = Date.now() + 30_000;
    while ((await journal.countDocuments({ adds: { $regex: /"big-0"/ } })) === 0) {
      if (Date.now() > deadline) throw new Error('the big add never reached the journal');
      await new Promise((r) => setTimeout(r, 5));
    }
    await first.kill('SIGKILL');
    // Its tasks were durable in the journal only (the folder waits before inserting them).
    expect(await tasks.countDocuments({ _id: { $regex: /^big-/ } })).toBeLessThan(10_000);

    await start();
    // The restarted master inserted the whole add before accepting connections, each task once.
    expect(await tasks.countDocuments({ _id: { $regex: /^big-/ } })).toBe(10_000);
    expect(await tasks.countDocuments({ _id: { $regex: /^big-/ }, state: { $ne: 'ready' } })).toBe(0);
    expect(await conn.collection('task_adds').countDocuments({})).toBe(0);
    // The acknowledged add, older, runs first.
    const runner = await rawRunner(url, { runnerId: 'after', slots: 10 });
    cleanup.push(() => runner.close());
    await runner.until(() => runner.assigned.length === 10);
    expect(runner.assigned.map((a) => a.id).sort()).toEqual(
      acked.ok ? acked.tasks.map((t) => t.id).sort() : [],
    );
    await runner.finish(
      runner.assigned.map((a) => ({ id: a.id, attempt: a.attempt, ok: true, result: null })),
    );
    // The big add's ids are taken: it is stored.
    const feeder2 = await rawFeeder(url);
    cleanup.push(() => feeder2.close());
    const again = await feeder2.add([{ id: 'big-0', module: 'ok' }]);
    expect(again.ok).toBe(false);
  });

  test('a task assigned to a runner that never comes back is requeued after the grace period, and the lost attempt does not count against maxAttempts', async () => {
    const dbName = testDbName('lostrunner');
    const first: Master = await startMaster(dbName);
    const gone = await rawRunner(first.url, { runnerId: 'gone', slots: 1 });
    const feeder = await rawFeeder(first.url);
    expect((await feeder.add([{ id: 'orphan', module: 'ok', maxAttempts: 2 }])).ok).toBe(true);
    await gone.until(() => gone.assigned.length === 1);
    expect(gone.assigned[0]).toMatchObject({ id: 'orphan', attempt: 1 });
    feeder.close();
    gone.socket.disconnect();
    await first.close();

    const second = await startMaster(dbName, { recoveryGraceMs: 300 });
    cleanup.push(() => second.close());
    const other = await rawRunner(second.url, { runnerId: 'other', slots: 1 });
    cleanup.push(() => other.close());
    await other.until(() => other.assigned.length === 1, {
      what: 'the orphaned task requeued after the recovery grace and assigned to runner "other"',
    });
    expect(other.assigned[0]).toMatchObject({ id: 'orphan', attempt: 2 });
    // Attempt 2 fails: with the lost attempt counted this would be the last of maxAttempts: 2.
    await other.finish([{ id: 'orphan', attempt: 2, ok: false, error: { code: 'ETASK', message: 'flaky' } }]);
    await other.until(() => other.assigned.length === 2);
    expect(other.assigned[1]).toMatchObject({ id: 'orphan', attempt: 3 });
    const watcher = io(`${second.url}/feeder`, { transports: ['websocket'], forceNew: true });
    cleanup.push(() => watcher.close());
    await other.finish([{ id: 'orphan', attempt: 3, ok: true, result: 'third time' }]);
    const reply = (await watcher.emitWithAck('tasks:watch', { ids: ['orphan'] })) as {
      outcomes: { state: string; result: unknown; attempts: number }[];
    };
    expect(reply.outcomes).toEqual([
      expect.objectContaining({ state: 'done', result: 'third time', attempts: 3 }),
    ]);
  });

  test('an id stored before the restart is refused by the _id index, naming the task, with nothing else of the add kept', async () => {
    const dbName = testDbName('takenafter');
    const first = await startMaster(dbName);
    const f1 = await rawFeeder(first.url);
    expect((await f1.add([{ id: 'persisted', module: 'ok' }])).ok).toBe(true);
    f1.close();
    await first.close();

    const second = await startMaster(dbName);
    cleanup.push(() => second.close());
    const f2 = await rawFeeder(second.url);
    cleanup.push(() => f2.close());
    const reply = await f2.add([
      { id: 'fresh', module: 'ok' },
      { id: 'persisted', module: 'ok' },
    ]);
    expect(reply).toMatchObject({
      ok: false,
      error: {
        code: 'EVALIDATION',
        message: expect.stringContaining('tasks[1].id: id "persisted" is already taken'),
      },
    });
    // Nothing of the refused add is kept: its other id is free.
    expect((await f2.add([{ id: 'fresh', module: 'ok' }])).ok).toBe(true);
  });
});

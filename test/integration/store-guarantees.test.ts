/**
 * Guarantees of the store and the API that nothing else in the suite would notice losing: the
 * folder's `rev < new` precondition, the API's runner filter, which tasks retention by count keeps,
 * and that retention never removes a task that is live again in memory.
 */
import mongoose, { type Connection } from 'mongoose';
import type { Master } from '../../master/master';
import { Store } from '../../master/store/store';
import { newTaskRecord } from '../../master/task-record';
import { silentLogger } from '../../common/logger';
import type { TaskDoc } from '../../models/task';
import { startMaster } from '../helpers/cluster';
import { startFeeder, startRunner } from '../helpers/clients';
import { testDbName, testDbUrl, testMongoUrl } from '../helpers/db';
import { eventually } from '../helpers/wait';
import { WireProxy } from '../helpers/wire-proxy';

describe('store and API guarantees', () => {
  const cleanup: (() => Promise<unknown> | unknown)[] = [];
  afterEach(async () => {
    for (const c of cleanup.splice(0).reverse()) await c();
  });

  async function connect(dbName: string): Promise<Connection> {
    const conn = await mongoose.createConnection(testDbUrl(dbName)).asPromise();
    cleanup.push(() => conn.close());
    return conn;
  }

  async function master(label: string, opts: Parameters<typeof startMaster>[1] = {}) {
    const dbName = testDbName(label);
    const m: Master = await startMaster(dbName, opts);
    cleanup.push(() => m.close());
    const feeder = await startFeeder(m.url);
    cleanup.push(() => feeder.close());
    const conn = await connect(dbName);
    return { master: m, feeder, dbName, tasks: conn.collection<TaskDoc>('tasks') };
  }

  test('the folder never writes an older state over a newer one in tasks (its filter holds rev < new)', async () => {
    const conn = await connect(testDbName('fold-rev'));
    const store = new Store(conn, { writeChunk: 1000, logger: silentLogger() });
    cleanup.push(() => store.close());
    const created = Date.now();
    const base = { batch: 'b', module: 'ok', params: [], maxAttempts: 1, created, updated: created };
    await store.tasks.insertOne({ _id: 'newer', ...base, state: 'done', attempts: 2, rev: 5 } as TaskDoc);
    // A record behind the document (rev 3 < 5): what a late write of a stale state would carry.
    const stale = newTaskRecord({
      id: 'newer',
      module: 'ok',
      batch: 'b',
      created,
      state: 'running',
      maxAttempts: 1,
      attempts: 1,
      rev: 3,
      who: 'someone',
    });
    store.fold(stale);
    await store.folder.settled();
    expect(store.folder.counters.commands).toBeGreaterThan(0); // the update was sent
    expect(await store.tasks.findOne({ _id: 'newer' })).toMatchObject({ state: 'done', rev: 5, attempts: 2 });
    // A newer record is written.
    store.fold({ ...stale, rev: 6, state: 'running' });
    await store.folder.settled();
    expect(await store.tasks.findOne({ _id: 'newer' })).toMatchObject({ state: 'running', rev: 6 });
  });

  test("a deposed master's folder never writes over a document a newer epoch wrote (its filter holds the epoch)", async () => {
    const conn = await connect(testDbName('fold-epoch'));
    // Epoch 1 lost its lease to epoch 2, which wrote the task since; epoch 1's late fold arrives.
    const deposed = new Store(conn, { writeChunk: 1000, logger: silentLogger(), epoch: 1 });
    cleanup.push(() => deposed.close());
    const created = Date.now();
    const base = { batch: 'b', module: 'ok', params: [], maxAttempts: 1, created, updated: created };
    await deposed.tasks.insertOne({
      _id: 'taken',
      ...base,
      state: 'ready',
      attempts: 0,
      rev: 1,
      epoch: 2,
    } as TaskDoc);
    const late = newTaskRecord({
      id: 'taken',
      module: 'ok',
      batch: 'b',
      created,
      state: 'running',
      maxAttempts: 1,
      attempts: 1,
      rev: 9, // a higher rev than the document's: only the epoch stops it
      who: 'someone',
    });
    deposed.fold(late);
    await deposed.folder.settled();
    expect(deposed.folder.counters.commands).toBeGreaterThan(0); // the update was sent
    expect(await deposed.tasks.findOne({ _id: 'taken' })).toMatchObject({
      state: 'ready',
      rev: 1,
      epoch: 2,
    });
    // The master of the newer epoch writes it, and stamps its epoch.
    const current = new Store(conn, { writeChunk: 1000, logger: silentLogger(), epoch: 2 });
    cleanup.push(() => current.close());
    current.fold(late);
    await current.folder.settled();
    expect(await current.tasks.findOne({ _id: 'taken' })).toMatchObject({
      state: 'running',
      rev: 9,
      epoch: 2,
    });
  });

  test('a store whose master lost its lease sends no write command: adds are refused, changes dropped', async () => {
    const proxy = await WireProxy.start(testMongoUrl());
    cleanup.push(() => proxy.close());
    const dbName = testDbName('fenced');
    const conn = await mongoose.createConnection(proxy.url(dbName)).asPromise();
    cleanup.push(() => conn.close());
    let leased = true;
    const store = new Store(conn, {
      writeChunk: 1000,
      logger: silentLogger(),
      epoch: 1,
      writable: () => leased,
    });
    const created = Date.now();
    const doc = (id: string) =>
      ({
        _id: id,
        batch: 'b',
        module: 'ok',
        params: [],
        maxAttempts: 1,
        created,
        updated: created,
        state: 'ready',
        attempts: 0,
        rev: 0,
      }) as TaskDoc;
    expect(await store.insertTasks([doc('before')])).toEqual({ ok: true });
    expect(proxy.writesSince(created).length).toBeGreaterThan(0); // the proxy sees the store's writes

    // Nothing in flight when the lease goes: its document in tasks, the journal's deleted.
    await store.folder.insertUnbornNow();
    await store.folder.settled();
    await store.barrier();
    leased = false;
    const lost = Date.now();
    const refused = await store.insertTasks([doc('after')]);
    expect(refused).toMatchObject({ ok: false, error: { code: 'ESTANDBY' } });
    store.update(
      newTaskRecord({
        id: 'before',
        module: 'ok',
        batch: 'b',
        created,
        state: 'running',
        maxAttempts: 1,
        attempts: 1,
        rev: 1,
        who: 'r',
      }),
    );
    await store.abandoned;
    expect(proxy.writesSince(lost)).toEqual([]);
    const direct = await connect(dbName);
    expect(await direct.collection('tasks').countDocuments({ _id: 'after' } as never)).toBe(0);
  });

  test('GET /api/tasks?runner=R lists only the tasks that ran on R', async () => {
    const { master: m, feeder } = await master('runner-filter', { retainMs: null });
    for (const id of ['filter-a', 'filter-b']) {
      const r = await startRunner(m.url, { runnerId: id, workers: 1, slots: 2 });
      cleanup.push(() => r.close());
    }
    const tasks = [
      { id: 'on-a-1', module: 'ok', runner: 'filter-a' },
      { id: 'on-a-2', module: 'ok', runner: 'filter-a' },
      { id: 'on-b-1', module: 'ok', runner: 'filter-b' },
    ];
    expect((await feeder.work(tasks)).map((o) => o.state)).toEqual(['done', 'done', 'done']);
    await m.flushed();
    const list = async (runner: string) => {
      const res = await fetch(new URL(`/api/tasks?runner=${runner}`, m.url));
      expect(res.status).toBe(200);
      return ((await res.json()) as { tasks: { id: string }[] }).tasks.map((t) => t.id).sort();
    };
    expect(await list('filter-a')).toEqual(['on-a-1', 'on-a-2']);
    expect(await list('filter-b')).toEqual(['on-b-1']);
    expect(await list('nobody')).toEqual([]);
  });

  test('retention by count keeps the newest final tasks and removes the oldest', async () => {
    const { master: m, feeder, tasks } = await master('retain-count', { retainMs: null, retainCount: 2 });
    const r = await startRunner(m.url, { workers: 1, slots: 1 });
    cleanup.push(() => r.close());
    // One after the other, so each finishes (and is `updated`) after the one before.
    for (const id of ['old-1', 'old-2', 'new-1', 'new-2'])
      expect(await feeder.work([{ id, module: 'ok' }])).toMatchObject([{ state: 'done' }]);
    await m.flushed();
    // The periodic pass (5 s after start) may have come first on a slow machine: what is left is the
    // guarantee, not which pass removed it.
    await m.retainNow();
    expect((await tasks.find({}, { projection: { _id: 1 } }).toArray()).map((d) => d._id).sort()).toEqual([
      'new-1',
      'new-2',
    ]);
  });

  test('retention by count does not remove a task retried (live again) before its new state reached tasks', async () => {
    const { master: m, feeder, tasks } = await master('retain-live', { retainMs: null, retainCount: 1 });
    const r = await startRunner(m.url, { workers: 1, slots: 1 });
    // Both fail, `again` first: the oldest final task, the one retention by count would take.
    expect(await feeder.work([{ id: 'again', module: 'throws', maxAttempts: 1 }])).toMatchObject([
      { state: 'failed' },
    ]);
    expect(await feeder.work([{ id: 'kept', module: 'throws', maxAttempts: 1 }])).toMatchObject([
      { state: 'failed' },
    ]);
    await r.close(); // so the retried task stays ready
    await m.flushed();
    expect((await m.retry(['again'])).retried).toEqual(['again']);
    // Its document still says failed (a state that is not final is folded ~200 ms later): only
    // memory knows it is live again.
    expect(await tasks.findOne({ _id: 'again' })).toMatchObject({ state: 'failed' });
    await m.retainNow();
    await m.flushed();
    expect(await tasks.findOne({ _id: 'again' })).toMatchObject({ state: 'ready' });
    expect(await tasks.countDocuments({ _id: 'kept' })).toBe(1);
    // And it runs to its end, recorded in tasks.
    const again = await startRunner(m.url, { workers: 1, slots: 1 });
    cleanup.push(() => again.close());
    await eventually(
      async () => {
        await m.flushed();
        return (await tasks.findOne({ _id: 'again', state: 'failed', attempts: 2 })) !== null;
      },
      { what: 'the retried task failed again, recorded in tasks' },
    );
  });

  test("a master's start reads the stored batches with as many commands for 40 batches as for 2 (a query per batch made a takeover grow with every batch kept)", async () => {
    const proxy = await WireProxy.start(testMongoUrl());
    cleanup.push(() => proxy.close());
    /** Commands on `tasks` a master sends while it starts on a database holding `batches` batches. */
    async function startReads(label: string, batches: number): Promise<number> {
      const { master: first, feeder, dbName } = await master(label);
      for (let b = 0; b < batches; b++) await feeder.add([{ module: 'm', params: [] }], { batch: `b${b}` });
      await feeder.close();
      await first.close();
      const from = proxy.commands.length;
      const again = await startMaster(dbName, { mongoUrl: proxy.url('') });
      cleanup.push(() => again.close());
      // Every stored batch is seeded into the dashboard's view, counts and all.
      expect(again.monitor.recentBatches(100).map((b) => [b.id, b.total])).toEqual(
        expect.arrayContaining(Array.from({ length: batches }, (_, b) => [`b${b}`, 1])),
      );
      return proxy.commands.slice(from).filter((c) => c.collection === 'tasks').length;
    }
    const few = await startReads('batches-few', 2);
    const many = await startReads('batches-many', 40);
    expect(few).toBeGreaterThan(0);
    expect(many).toBe(few);
  });
});

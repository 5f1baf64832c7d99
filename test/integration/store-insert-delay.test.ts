/**
 * When the folder writes into `tasks`: by default a new task stays only in the journal for a minute,
 * so one that finishes within it is inserted once, final, and never updated; beyond a limit of
 * waiting new tasks the oldest are inserted at once; and its rounds are at least `foldGapMs` apart.
 * The clock is Date.now, moved by the test.
 */
import mongoose, { type Connection } from 'mongoose';
import { Store } from '../../master/store/store';
import { newTaskRecord } from '../../master/task-record';
import type { TaskDoc } from '../../models/task';
import { silentLogger } from '../../common/logger';
import { testDbName, testDbUrl } from '../helpers/db';
import { eventually } from '../helpers/wait';
import { addThrough, newTaskDoc } from '../helpers/store-tasks';

describe('store: when the folder writes into tasks', () => {
  let conn: Connection;
  let store: Store;
  let shift = 0;

  beforeAll(async () => {
    conn = await mongoose.createConnection(testDbUrl(testDbName('insert-delay'))).asPromise();
  });
  beforeEach(() => {
    shift = 0;
    const real = Date.now.bind(Date);
    jest.spyOn(Date, 'now').mockImplementation(() => real() + shift);
  });
  afterEach(async () => {
    await store.close();
    jest.restoreAllMocks();
  });
  afterAll(async () => {
    await conn.close();
  });

  const add = (id: string): Promise<TaskDoc> => addThrough(store, newTaskDoc(id));

  /** Adds a task and finishes it: the folder writes a final state at once, in a round of its own. */
  async function addFinished(id: string, inserted = true): Promise<void> {
    const doc = await add(id);
    store.update(
      newTaskRecord({
        id,
        module: doc.module,
        batch: doc.batch,
        created: doc.created,
        state: 'done',
        maxAttempts: 3,
        attempts: 1,
        rev: 2,
        who: 'r1',
        result: 'ok',
      }),
    );
    await store.barrier();
    if (inserted) await eventually(() => store.tasks.findOne({ _id: id }), { what: `task "${id}" in tasks` });
  }

  const stored = async (ids: string[]) =>
    (await store.tasks.find({ _id: { $in: ids } }).toArray()).map((d) => d._id).sort();

  test('by default a new task waits a minute in the journal; a finished one is inserted at once', async () => {
    store = new Store(conn, { writeChunk: 1000, logger: silentLogger() });
    await add('open-1');
    shift = 59_000;
    // The round that inserts this finished task passes over open-1: not a minute old yet.
    await addFinished('quick-1');
    expect(await stored(['open-1', 'quick-1'])).toEqual(['quick-1']);
    expect(await store.tasks.findOne({ _id: 'quick-1' })).toMatchObject({ state: 'done', rev: 2 });
    shift = 61_000;
    await addFinished('quick-2');
    expect(await stored(['open-1', 'quick-1', 'quick-2'])).toEqual(['open-1', 'quick-1', 'quick-2']);
    expect(await store.tasks.findOne({ _id: 'open-1' })).toMatchObject({ state: 'ready', rev: 0 });
  });

  test('beyond the limit of waiting new tasks, the oldest are inserted at once', async () => {
    store = new Store(conn, { writeChunk: 1000, unbornLimit: 4, logger: silentLogger() });
    for (const id of ['w-1', 'w-2', 'w-3']) await add(id);
    await addFinished('w-quick');
    expect(await stored(['w-1', 'w-2', 'w-3'])).toEqual([]);
    // Five waiting, one over the limit: the oldest goes.
    for (const id of ['w-4', 'w-5']) await add(id);
    await eventually(async () => (await stored(['w-1'])).length === 1, { what: 'the oldest inserted' });
    // Five again with this one: the next oldest goes, and no other.
    await addFinished('w-quick-2');
    expect(await stored(['w-1', 'w-2', 'w-3', 'w-4', 'w-5'])).toEqual(['w-1', 'w-2']);
  });

  test('rounds of the folder are at least foldGapMs apart: what finishes meanwhile is written together', async () => {
    store = new Store(conn, { writeChunk: 1000, foldGapMs: 600_000, logger: silentLogger() });
    await addFinished('gap-1', false);
    await store.folder.insertUnbornNow(); // a round: the next is not due for ten minutes
    const before = { ...store.folder.counters };
    for (const id of ['gap-2', 'gap-3', 'gap-4']) await addFinished(id, false);
    // A read through the master does not wait for the gap: one round writes the three.
    await store.folder.insertUnbornNow();
    expect(await stored(['gap-2', 'gap-3', 'gap-4'])).toEqual(['gap-2', 'gap-3', 'gap-4']);
    expect(store.folder.counters.commands - before.commands).toBe(1);
    expect(store.folder.counters.documents - before.documents).toBe(3);
  });

  /** A record of the added task, assigned at revision 1: durable once the store's barrier resolves. */
  async function assign(doc: TaskDoc) {
    const t = newTaskRecord({
      id: doc._id,
      module: doc.module,
      batch: doc.batch,
      created: doc.created,
      state: 'assigned',
      maxAttempts: 3,
      attempts: 1,
      rev: 1,
      who: 'r1',
    });
    store.update(t);
    await store.barrier();
    return t;
  }

  test('the folder writes no state the journal does not hold: a task changed again in memory waits for that change', async () => {
    store = new Store(conn, { writeChunk: 1000, logger: silentLogger() });
    const t = await assign(await add('ahead-1'));
    // Finished in memory, the change not yet given to the store (on its way to the journal).
    Object.assign(t, { state: 'done', rev: 2, result: 'r', finishedAt: Date.now() });
    shift = 120_000; // the insert is due, the assigned state long ripe
    await addFinished('ahead-other'); // a round ran, and wrote that one
    expect(await stored(['ahead-1', 'ahead-other'])).toEqual(['ahead-other']);
    store.update(t);
    await store.barrier();
    await eventually(async () => (await store.tasks.findOne({ _id: 'ahead-1' }))?.state === 'done', {
      what: 'ahead-1 done in tasks',
    });
    // Written once, final: an insert.
    expect(await store.tasks.findOne({ _id: 'ahead-1' })).toMatchObject({
      state: 'done',
      rev: 2,
      result: 'r',
    });
  });

  test('a read through the master finds a new task even while a change of it is on its way to the journal', async () => {
    store = new Store(conn, { writeChunk: 1000, foldGapMs: 600_000, logger: silentLogger() });
    const t = await assign(await add('read-1'));
    Object.assign(t, { state: 'running', rev: 2 }); // not given to the store yet
    await store.folder.insertUnbornNow();
    expect(await stored(['read-1'])).toEqual(['read-1']);
  });

  test('a new task waiting in the journal is not late until its insert is due (oldestUnfoldedMs)', async () => {
    store = new Store(conn, { writeChunk: 1000, foldGapMs: 600_000, logger: silentLogger() });
    await add('late-1'); // its round has run: the next is ten minutes away
    shift = 30_000;
    expect(store.status().oldestUnfoldedMs).toBe(0);
    shift = 70_000;
    const late = store.status().oldestUnfoldedMs;
    expect(late).toBeGreaterThanOrEqual(10_000);
    expect(late).toBeLessThan(20_000);
  });
});

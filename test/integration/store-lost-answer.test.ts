/**
 * A write whose answer was lost (a replica set's failover, a timeout) was written all the same; the
 * store sends it again. For a new task's document the second insert meets the first: the document
 * must end with the state the second one carries, or `tasks` keeps the older state while the journal
 * that held the newer one is deleted, and a restarted master runs a finished task again.
 */
import mongoose, { type Connection } from 'mongoose';
import { Store } from '../../master/store/store';
import { newTaskRecord } from '../../master/task-record';
import type { TaskDoc } from '../../models/task';
import { capturingLogger } from '../helpers/capture';
import { testDbName, testDbUrl } from '../helpers/db';
import { addThrough, newTaskDoc } from '../helpers/store-tasks';

describe('store: an insert sent again after its answer was lost', () => {
  let conn: Connection;
  let store: Store;
  let logs: ReturnType<typeof capturingLogger>;

  beforeAll(async () => {
    conn = await mongoose.createConnection(testDbUrl(testDbName('lost-answer'))).asPromise();
  });
  beforeEach(() => {
    logs = capturingLogger();
    // New tasks are inserted only once final: the test writes the "earlier try" before that.
    store = new Store(conn, { writeChunk: 1000, insertDelayMs: 60_000, logger: logs.logger });
  });
  afterEach(async () => {
    await store.close();
  });
  afterAll(async () => {
    await conn.close();
  });

  /** A task added through the store (durable in the journal, not yet in `tasks`). */
  const add = (id: string): Promise<TaskDoc> => addThrough(store, newTaskDoc(id, { state: 'waiting' }));

  /** The task's record, finished with a result at revision 3. */
  const finished = (doc: TaskDoc) =>
    newTaskRecord({
      id: doc._id,
      module: doc.module,
      batch: doc.batch,
      created: doc.created,
      state: 'done',
      maxAttempts: 3,
      attempts: 1,
      rev: 3,
      who: 'r1',
      result: { n: 42 },
    });

  test("a document already written by the insert's earlier try ends with the newer state the retry carries", async () => {
    const doc = await add('retried');
    // What the earlier try wrote, while the task was still waiting (rev 1).
    await store.tasks.insertOne({ ...doc, state: 'waiting', rev: 1 } as TaskDoc);
    store.update(finished(doc));
    await store.barrier();
    await store.folder.settled();
    expect(await store.tasks.findOne({ _id: 'retried' })).toMatchObject({
      state: 'done',
      rev: 3,
      result: { n: 42 },
    });
    // The journal that held the newer state is gone: `tasks` is the only record left.
    expect(await store.journal.countDocuments({})).toBe(0);
    expect(logs.lines.filter((l) => /was taken/.test(String(l.message)))).toEqual([]);
  });

  test('a document of another task under that id is left as it is, and the clash is logged', async () => {
    const doc = await add('clash');
    const other = { ...doc, batch: 'other', created: doc.created - 1000, state: 'done', rev: 1 } as TaskDoc;
    await store.tasks.insertOne(other);
    store.update(finished(doc));
    await store.barrier();
    await store.folder.settled();
    expect(await store.tasks.findOne({ _id: 'clash' })).toMatchObject({ batch: 'other', rev: 1 });
    expect(
      logs.lines.filter((l) => /a new task's id was taken in tasks/.test(String(l.message))),
    ).toHaveLength(1);
  });
});

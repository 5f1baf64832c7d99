/**
 * The store keeps the `addKey` of the add that created each task wherever the task is: in the journal
 * (durable, not yet in `tasks`), in `tasks`, and through a restart's recovery. An add of an id a
 * stored task has is refused as `taken`, which is what sends a keyed add to look its ids up.
 */
import mongoose, { type Connection } from 'mongoose';
import { Store } from '../../master/store/store';
import type { TaskDoc } from '../../models/task';
import { capturingLogger } from '../helpers/capture';
import { testDbName, testDbUrl } from '../helpers/db';
import { newTaskDoc } from '../helpers/store-tasks';

describe("store: an add's key", () => {
  let conn: Connection;
  const stores: Store[] = [];
  /** New tasks stay in the journal (inserted into `tasks` only once final, or after a minute). */
  const open = () => {
    const s = new Store(conn, { writeChunk: 1000, insertDelayMs: 60_000, logger: capturingLogger().logger });
    stores.push(s);
    return s;
  };

  beforeAll(async () => {
    conn = await mongoose.createConnection(testDbUrl(testDbName('store-add-key'))).asPromise();
  });
  afterAll(async () => {
    for (const s of stores) if (!s.isClosed) await s.close();
    await conn.close();
  });

  const docOf = (id: string, addKey?: string): TaskDoc => newTaskDoc(id, addKey ? { addKey } : {});

  test('a task only in the journal: its key is known, and an add of its id again is refused as taken', async () => {
    const store = open();
    const prepared = store.prepareTasks([docOf('j-1', 'key-j'), docOf('j-2')]);
    if (!('docs' in prepared)) throw new Error(prepared.error.message);
    expect(await store.insertTasks(prepared.docs)).toEqual({ ok: true });
    expect(await store.tasks.countDocuments({ _id: { $in: ['j-1', 'j-2'] } })).toBe(0);

    const states = await store.fetchStates(['j-1', 'j-2']);
    expect(states.get('j-1')?.addKey).toBe('key-j');
    // No key: none is stored, not even an empty one.
    expect(states.get('j-2')).toBeDefined();
    expect(states.get('j-2')).not.toHaveProperty('addKey');
    expect(await store.insertTasks([docOf('j-1', 'key-j')])).toMatchObject({
      ok: false,
      id: 'j-1',
      taken: true,
    });
    await store.close();
  });

  test('after recovery the key is in `tasks`, and an add of the id is refused as taken there too', async () => {
    // The previous store closed with j-1 only in the journal: recovery inserts it into `tasks`.
    const store = open();
    await store.loadForRecovery();
    expect(await store.tasks.findOne({ _id: 'j-1' })).toMatchObject({ addKey: 'key-j' });
    expect(await store.tasks.findOne({ _id: 'j-2' })).not.toHaveProperty('addKey');
    expect((await store.fetchStates(['j-1'])).get('j-1')?.addKey).toBe('key-j');
    expect(await store.insertTasks([docOf('j-1', 'key-j')], ['j-1'])).toMatchObject({
      ok: false,
      id: 'j-1',
      taken: true,
    });
  });
});

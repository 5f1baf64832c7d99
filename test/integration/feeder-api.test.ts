/**
 * The Feeder makes the obvious sequence right: `work()` after `add()` waits rather than adding again,
 * `wait()` separates the two, and a `result` listener registered late still gets every outcome.
 */
import mongoose, { type Connection } from 'mongoose';
import type { TaskOutcome } from '../../protocol/schemas';
import { waitForEvent } from '../helpers/wait';
import { testDbName, testMongoUrl } from '../helpers/db';
import { useCluster } from '../helpers/use-cluster';

describe('the Feeder API', () => {
  const c = useCluster({ dbName: testDbName('feeder-api'), runners: [{ workers: 1, slots: 4 }] });
  const feeder = () => c.startFeeder();
  let db: Connection;
  /** Tasks in `tasks` once everything durable is written there. */
  const storedTasks = async () => {
    await c.master.flushed();
    return db.collection('tasks').countDocuments({});
  };

  beforeAll(async () => {
    db = await mongoose.createConnection(testMongoUrl(), { dbName: c.dbName }).asPromise();
  });
  afterAll(async () => {
    await db?.close();
  });

  test('work() on tasks already added waits for them instead of adding them again', async () => {
    const f = await feeder();
    // Without ids, adding them again would store and run them twice under new generated ids.
    const tasks = [
      { module: 'ok', params: ['a'] },
      { module: 'ok', params: ['b'] },
    ];
    const before = await storedTasks();
    const refs = await f.add(tasks);
    const outcomes = await f.work(tasks);
    expect(outcomes.map((o) => o.id)).toEqual(refs.map((r) => r.id));
    expect(outcomes.map((o) => o.result)).toEqual([['a'], ['b']]);
    expect((await storedTasks()) - before).toBe(2);
  });

  test('work() on new objects with ids already added waits for those and adds only the new ones', async () => {
    const f = await feeder();
    await f.add([{ id: 'api-first', module: 'ok', params: [1] }]);
    const outcomes = await f.work([
      { id: 'api-first', module: 'ok', params: [1] },
      { id: 'api-second', module: 'ok', params: [2] },
    ]);
    // Adding api-first again would have been refused as taken, rejecting work().
    expect(outcomes.map((o) => [o.id, o.state, o.result])).toEqual([
      ['api-first', 'done', [1]],
      ['api-second', 'done', [2]],
    ]);
  });

  test('wait() resolves with the outcomes of tasks added before, in the order given, also from another feeder', async () => {
    const adder = await feeder();
    const refs = await adder.add([
      { id: 'api-w1', module: 'timed', params: [80, 'slow'] },
      { id: 'api-w2', module: 'ok', params: ['fast'] },
    ]);
    const waiter = await feeder();
    const outcomes = await waiter.wait([refs[1], 'api-w1']);
    expect(outcomes.map((o) => o.id)).toEqual(['api-w2', 'api-w1']);
    expect(outcomes.every((o) => o.state === 'done')).toBe(true);
  });

  test('waiting for a task the master does not know rejects with a message naming it', async () => {
    const f = await feeder();
    await expect(f.outcome('api-never-added')).rejects.toThrow('does not know task "api-never-added"');
  });

  test('a result listener registered after work() resolved still gets every result, a once listener one', async () => {
    const f = await feeder();
    const outcomes = await f.work([
      { id: 'api-late-1', module: 'ok' },
      { id: 'api-late-2', module: 'ok' },
    ]);
    const seen: TaskOutcome[] = [];
    f.on('result', (o) => seen.push(o));
    const once: TaskOutcome[] = [];
    f.once('result', (o) => once.push(o));
    // The replay is delivered right after the listener is registered; a new result comes after it.
    const next = waitForEvent(f, 'result', (o: TaskOutcome) => o.id === 'api-late-3');
    await f.add([{ id: 'api-late-3', module: 'ok' }]);
    await next;
    expect(seen.map((o) => o.id)).toEqual([...outcomes.map((o) => o.id), 'api-late-3']);
    expect(once.map((o) => o.id)).toEqual(['api-late-1']);
  });

  test('a result listener registered before work() gets each result once', async () => {
    const f = await feeder();
    const seen: string[] = [];
    f.on('result', (o) => seen.push(o.id));
    await f.work([{ id: 'api-early-1', module: 'ok' }]);
    expect(seen).toEqual(['api-early-1']);
  });
});

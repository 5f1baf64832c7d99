/**
 * An add carrying an `addKey` is the same add on every try: a feeder that lost the answer sends it
 * again, and the master answers as it answered the first time (same batch, a ref per task) without
 * storing or running anything twice — whether the tasks are in flight, running, final in memory,
 * recovered after a restart or only in the database. Other adds of the same ids are refused as ever.
 */
import mongoose, { type Connection } from 'mongoose';
import type { AddReply } from '../../protocol/schemas';
import { rawFeeder, type RawFeeder } from '../helpers/raw-clients';
import { testMongoUrl } from '../helpers/db';
import { useCluster } from '../helpers/use-cluster';

describe('adds with an addKey', () => {
  const feeders: RawFeeder[] = [];
  // Above useCluster: the raw sockets close before the master does.
  afterAll(() => {
    for (const f of feeders) f.close();
  });
  const c = useCluster({ runners: [{ runnerId: 'add-key-r', workers: 2, slots: 4 }] });
  let db: Connection;
  /** Results the runners reported, by task id (a task that ran twice is there twice). */
  const results: string[] = [];
  const runs = (id: string) => results.filter((r) => r === id).length;
  const feeder = async () => {
    const f = await rawFeeder(c.url);
    feeders.push(f);
    return f;
  };
  /** The stored documents of these ids, once everything durable is in `tasks`. */
  const storedDocs = async (ids: string[]) => {
    await c.master.flushed();
    return db
      .collection<{ _id: string; addKey?: string; state: string; batch: string }>('tasks')
      .find({ _id: { $in: ids } }, { projection: { addKey: 1, state: 1, batch: 1 } })
      .sort({ _id: 1 })
      .toArray();
  };
  const listen = () => c.runner.on('result', (r: { id: string }) => results.push(r.id));

  beforeAll(async () => {
    db = await mongoose.createConnection(testMongoUrl(), { dbName: c.dbName }).asPromise();
    listen();
  });
  afterAll(async () => {
    await db?.close();
  });

  const twice = [
    { id: 'twice-1', module: 'timed', params: [200, 'one'] },
    { id: 'twice-2', module: 'ok', params: [2] },
  ];

  test('the same add sent again with its addKey is answered as the first, stored once and run once', async () => {
    const f = await feeder();
    const first = await f.add(twice, { addKey: 'add-twice' });
    expect(first).toMatchObject({
      ok: true,
      tasks: [
        { id: 'twice-1', _id: 'twice-1' },
        { id: 'twice-2', _id: 'twice-2' },
      ],
    });
    // twice-1 is still running: the retry meets it in memory.
    expect(c.master.scheduler.tasks.has('twice-1')).toBe(true);
    const again = await f.add(twice, { addKey: 'add-twice' });
    expect(again).toEqual(first);
    await f.until(() => f.outcomes.has('twice-1') && f.outcomes.has('twice-2'));
    expect(f.outcomes.get('twice-1')).toMatchObject({ state: 'done', attempts: 1 });
    expect([runs('twice-1'), runs('twice-2')]).toEqual([1, 1]);
    const batch = (first as Extract<AddReply, { ok: true }>).batch;
    expect(await storedDocs(['twice-1', 'twice-2'])).toEqual([
      { _id: 'twice-1', addKey: 'add-twice', state: 'done', batch },
      { _id: 'twice-2', addKey: 'add-twice', state: 'done', batch },
    ]);
  });

  test('two tries of one add at once: both are answered alike and the tasks are stored and run once', async () => {
    const [a, b] = await Promise.all([feeder(), feeder()]);
    const tasks = [{ id: 'both-1', module: 'ok', params: ['both'] }];
    const [ra, rb] = await Promise.all([
      a.add(tasks, { addKey: 'add-both' }),
      b.add(tasks, { addKey: 'add-both' }),
    ]);
    expect(ra).toMatchObject({ ok: true, tasks: [{ id: 'both-1', _id: 'both-1' }] });
    expect(rb).toEqual(ra);
    await a.until(() => a.outcomes.has('both-1') && b.outcomes.has('both-1'));
    expect(b.outcomes.get('both-1')).toEqual(a.outcomes.get('both-1'));
    expect(runs('both-1')).toBe(1);
    expect(await storedDocs(['both-1'])).toHaveLength(1);
  });

  test('a retry once the tasks are final (their outcomes in memory) is answered as the first', async () => {
    expect(c.master.scheduler.finals.has('twice-1')).toBe(true);
    const f = await feeder();
    const again = await f.add(twice, { addKey: 'add-twice', batch: 'another-name' });
    const [doc] = await storedDocs(['twice-1']);
    // The first add's answer, batch included, whatever name this try gives.
    expect(again).toEqual({
      ok: true,
      batch: doc.batch,
      tasks: [
        { id: 'twice-1', _id: 'twice-1' },
        { id: 'twice-2', _id: 'twice-2' },
      ],
    });
    expect(runs('twice-1')).toBe(1);
  });

  test('the same ids under another addKey, or none, are refused as taken, as any add of them is', async () => {
    const f = await feeder();
    for (const extra of [{ addKey: 'another-add' }, {}])
      expect(await f.add(twice, extra)).toMatchObject({
        ok: false,
        error: {
          code: 'EVALIDATION',
          message: expect.stringContaining('tasks[0].id: id "twice-1" is already taken'),
        },
      });
    // With skip, they are existing tasks of another add.
    expect(await f.add(twice, { addKey: 'another-add', onExisting: 'skip' })).toMatchObject({
      ok: true,
      tasks: [
        { id: 'twice-1', existing: { state: 'done' } },
        { id: 'twice-2', existing: { state: 'done' } },
      ],
    });
    expect(await storedDocs(['twice-1', 'twice-2'])).toMatchObject([
      { addKey: 'add-twice' },
      { addKey: 'add-twice' },
    ]);
  });

  test('an add whose key some of its tasks have and others lack is refused as partly stored, naming the first missing', async () => {
    const f = await feeder();
    const reply = await f.add([...twice, { id: 'twice-3', module: 'ok' }], { addKey: 'add-twice' });
    expect(reply).toMatchObject({
      ok: false,
      error: {
        code: 'EVALIDATION',
        message: expect.stringContaining('tasks[2].id: the add with addKey "add-twice" is partly stored'),
      },
    });
    expect(await storedDocs(['twice-3'])).toEqual([]);
  });

  test('a retry of an add with skip: its own tasks as the first answer had them, the others again as existing', async () => {
    const f = await feeder();
    const tasks = [
      { id: 'twice-1', module: 'ok' },
      { id: 'skip-new', module: 'ok', params: ['s'] },
    ];
    const first = await f.add(tasks, { addKey: 'add-skip', onExisting: 'skip' });
    expect(first).toMatchObject({
      ok: true,
      tasks: [
        { id: 'twice-1', existing: { state: 'done' } },
        { id: 'skip-new', _id: 'skip-new' },
      ],
    });
    await f.until(() => f.outcomes.has('skip-new'));
    expect(await f.add(tasks, { addKey: 'add-skip', onExisting: 'skip' })).toEqual(first);
    expect(runs('skip-new')).toBe(1);
  });

  test('after a master restart, a retry of an add whose tasks wait is answered as the first', async () => {
    const f = await feeder();
    // No runner has this module: the tasks wait, and are recovered into memory by the restart.
    const tasks = [
      { id: 'waits-1', module: 'no-runner-has-it' },
      { id: 'waits-2', module: 'no-runner-has-it' },
    ];
    const first = await f.add(tasks, { addKey: 'add-waits' });
    expect(first.ok).toBe(true);
    await c.restart();
    listen();
    expect(c.master.scheduler.tasks.get('waits-1')?.addKey).toBe('add-waits');
    const again = await (await feeder()).add(tasks, { addKey: 'add-waits' });
    const { warnings: _, ...answer } = first as Extract<AddReply, { ok: true }>;
    expect(again).toEqual(answer);
    expect(await storedDocs(['waits-1', 'waits-2'])).toMatchObject([
      { addKey: 'add-waits', state: 'ready' },
      { addKey: 'add-waits', state: 'ready' },
    ]);
  });

  test('after a restart, a retry of an add whose tasks finished and are only in the database is answered as the first', async () => {
    // Neither in memory nor among the outcomes kept: only `tasks` knows them.
    expect(c.master.scheduler.tasks.has('twice-1')).toBe(false);
    expect(c.master.scheduler.finals.has('twice-1')).toBe(false);
    const [doc] = await storedDocs(['twice-1']);
    const f = await feeder();
    expect(await f.add(twice, { addKey: 'add-twice' })).toEqual({
      ok: true,
      batch: doc.batch,
      tasks: [
        { id: 'twice-1', _id: 'twice-1' },
        { id: 'twice-2', _id: 'twice-2' },
      ],
    });
    expect(c.master.scheduler.tasks.has('twice-1')).toBe(false);
    // Their outcomes come from the database, as for any add the feeder waits on.
    await f.until(() => f.outcomes.has('twice-1') && f.outcomes.has('twice-2'));
    expect(f.outcomes.get('twice-1')).toMatchObject({ state: 'done', attempts: 1 });
    expect(await storedDocs(['twice-1', 'twice-2'])).toMatchObject([{ state: 'done' }, { state: 'done' }]);
    // Another add of those ids is still refused after the retry was recognised.
    expect(await f.add(twice, { addKey: 'another-add' })).toMatchObject({ ok: false });
  });

  test('two tries at once of an add a stored task refuses: both are refused, the second not taken for a retry of the first', async () => {
    // twice-1 is only in the database: the store finds it when it writes the first try, whose
    // tasks the second try meets in memory meanwhile.
    const tasks = [
      { id: 'fresh-1', module: 'ok' },
      { id: 'twice-1', module: 'ok' },
    ];
    const [a, b] = await Promise.all([feeder(), feeder()]);
    const replies = await Promise.all([
      a.add(tasks, { addKey: 'add-refused' }),
      b.add(tasks, { addKey: 'add-refused' }),
    ]);
    for (const r of replies)
      expect(r).toMatchObject({
        ok: false,
        error: {
          code: 'EVALIDATION',
          message: expect.stringContaining('tasks[1].id: id "twice-1" is already taken'),
        },
      });
    expect(c.master.scheduler.tasks.has('fresh-1')).toBe(false);
    expect(await storedDocs(['fresh-1'])).toEqual([]);
  });

  test('the master still adds and runs an honest add afterwards', async () => {
    const f = await feeder();
    expect(
      await f.add([{ id: 'honest-1', module: 'ok', params: ['h'] }], { addKey: 'add-honest' }),
    ).toMatchObject({ ok: true });
    await f.until(() => f.outcomes.has('honest-1'));
    expect(f.outcomes.get('honest-1')).toMatchObject({ state: 'done', result: ['h'] });
    // None of the retries ran anything again.
    expect([runs('twice-1'), runs('twice-2'), runs('both-1')]).toEqual([1, 1, 1]);
  });
});

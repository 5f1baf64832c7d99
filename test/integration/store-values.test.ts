import mongoose from 'mongoose';
import { decodeValue } from '../../models/codec';
import type { TaskOutcome } from '../../protocol/schemas';
import { startMaster } from '../helpers/cluster';
import { testDbName, testDbUrl } from '../helpers/db';
import { startFeeder } from '../helpers/clients';
import { rawRunner, type RawRunner } from '../helpers/raw-clients';
import { waitForEvent } from '../helpers/wait';
import { useCluster } from '../helpers/use-cluster';

/**
 * Values a database refuses for their keys or shape, sent by feeders and returned by task modules.
 * None may wedge the writer: each is stored and read back unchanged, or refused for its own task
 * with a clear error, and an honest add → result round trip works right after.
 */
describe('no value can wedge the writer', () => {
  // Limits raised past what a database stores, so the writer itself meets the oversized values.
  const roomy = { maxMessageBytes: 64 * 1024 * 1024 };
  const c = useCluster({
    dbName: testDbName('wedge'),
    masterOptions: roomy,
    runners: [{ workers: 1, slots: 4, runnerId: 'r1' }],
    feeder: { maxMessageBytes: roomy.maxMessageBytes },
  });
  let conn: mongoose.Connection;
  beforeAll(async () => {
    conn = await mongoose.createConnection(testDbUrl(c.dbName)).asPromise();
  });
  afterAll(async () => {
    await conn?.close();
  });

  let honest = 0;
  afterEach(async () => {
    const label = `honest-${++honest}`;
    const [o] = await c.feeder.work([{ module: 'ok', params: [label] }]);
    expect(o).toMatchObject({ state: 'done', result: [label] });
  });

  async function storedDoc(id: string): Promise<Record<string, unknown>> {
    await c.master.flushed();
    const doc = await conn.collection<{ _id: string }>('tasks').findOne({ _id: id });
    if (!doc) throw new Error(`no tasks document for ${id}`);
    return doc as Record<string, unknown>;
  }

  test.each([
    ['dotted keys', [{ 'a.b': 1, c: { 'd.e': [1] } }]],
    ['$ keys', [{ $set: { x: 1 }, $where: 'sleep(1)' }]],
    ['__proto__ as a key', [JSON.parse('{"__proto__": {"admin": true}}') as unknown]],
    [
      'nested arrays',
      [
        [
          ['AAPL', 'MSFT'],
          [1, [2, [3]]],
        ],
      ],
    ],
    ['nesting 40 deep', [nest(40)]],
  ])('params with %s run, and are stored and read back unchanged', async (_name, params) => {
    const [o] = await c.feeder.work([{ module: 'ok', params }]);
    expect(o).toMatchObject({ state: 'done', result: params });
    const doc = await storedDoc(o.id);
    expect(decodeValue(doc.params)).toEqual(params);
    expect(decodeValue(doc.result)).toEqual(params);
    expect(doc.state).toBe('done');
    expect(({} as Record<string, unknown>).admin).toBeUndefined();
  });

  test('a result with a dotted key ({ "report.pdf": 1 }) is delivered and stored', async () => {
    const [o] = await c.feeder.work([{ module: 'ok', params: [{ 'report.pdf': 1 }] }]);
    expect(o.result).toEqual([{ 'report.pdf': 1 }]);
    expect(decodeValue((await storedDoc(o.id)).result)).toEqual([{ 'report.pdf': 1 }]);
  });

  test('a broadcast whose per-runner copy id collides with an existing task is refused as a whole, clearly', async () => {
    await c.feeder.work([{ id: 'cast@r1', module: 'ok' }]);
    await expect(c.feeder.add([{ id: 'cast', module: 'ok', broadcast: true }])).rejects.toMatchObject({
      message: expect.stringContaining('"cast@r1" is already taken'),
    });
    await c.master.flushed(); // anything durable would be in `tasks` now
    expect(await conn.collection<{ _id: string }>('tasks').countDocuments({ _id: 'cast' })).toBe(0);
    // The refused add took nothing of the task whose id it collided with.
    expect(await conn.collection<{ _id: string }>('tasks').findOne({ _id: 'cast@r1' })).toMatchObject({
      state: 'done',
    });
  });

  test('an add holding a document over the database limit (17 MB) is refused whole; nothing of it is stored', async () => {
    const big = 'x'.repeat(17 * 1024 * 1024);
    await expect(
      c.feeder.add([
        { id: 'ok1', module: 'ok' },
        { id: 'ok2', module: 'ok' },
        { id: 'bad', module: 'ok', params: [big] },
        { id: 'ok3', module: 'ok' },
      ]),
    ).rejects.toMatchObject({ code: 'EPERSIST', message: expect.stringContaining('"bad"') });
    await c.master.flushed();
    expect(
      await conn
        .collection<{ _id: string }>('tasks')
        .countDocuments({ _id: { $in: ['ok1', 'ok2', 'bad', 'ok3'] } }),
    ).toBe(0);
    // The ids are free: nothing of the refused add is left.
    expect(await c.feeder.work([{ id: 'ok1', module: 'ok', params: [1] }])).toMatchObject([
      { state: 'done' },
    ]);
  });
});

describe('a result the database refuses', () => {
  test('fails its task with EPERSIST, reaches the feeder so, and is not run again after a restart', async () => {
    const dbName = testDbName('refused');
    const first = await startMaster(dbName, { maxMessageBytes: 64 * 1024 * 1024 });
    const raw: RawRunner = await rawRunner(first.url, { runnerId: 'big', slots: 2 });
    const feeder = await startFeeder(first.url);
    const outcome = waitForEvent<[TaskOutcome]>(feeder, 'result', (o) => o.id === 'huge', {
      what: 'the outcome of task "huge"',
    }).then(([o]) => o);
    await feeder.add([{ id: 'huge', module: 'ok' }]);
    await raw.until(() => raw.assigned.length === 1);
    // 17 MB: more than any MongoDB-wire server stores in one document.
    const ack = (await raw.finish([
      { id: 'huge', attempt: 1, ok: true, result: { blob: 'y'.repeat(17 * 1024 * 1024) } },
    ])) as { ok: boolean };
    expect(ack.ok).toBe(true);
    expect(await outcome).toMatchObject({ state: 'failed', error: { code: 'EPERSIST' } });
    // The master goes on: another task round-trips.
    await feeder.add([{ id: 'after', module: 'ok' }]);
    await raw.until(() => raw.assigned.length === 2);
    await raw.finish([{ id: 'after', attempt: 1, ok: true, result: 'fine' }]);
    await first.flushed();
    raw.close();
    await feeder.close();
    await first.close();

    const second = await startMaster(dbName, { recoveryGraceMs: 100 });
    try {
      const again = await rawRunner(second.url, { runnerId: 'again', slots: 2 });
      const f2 = await startFeeder(second.url);
      await f2.add([{ id: 'probe', module: 'ok' }]);
      await again.until(() => again.assigned.some((a) => a.id === 'probe'));
      expect(again.assigned.map((a) => a.id)).toEqual(['probe']); // 'huge' is not run again
      await second.flushed();
      const conn = await mongoose.createConnection(testDbUrl(dbName)).asPromise();
      const doc = await conn.collection<{ _id: string }>('tasks').findOne({ _id: 'huge' });
      await conn.close();
      expect(doc).toMatchObject({ state: 'failed', error: { code: 'EPERSIST' } });
      again.close();
      await f2.close();
    } finally {
      await second.close();
    }
  });
});

function nest(depth: number): unknown {
  let v: unknown = { leaf: 1 };
  for (let i = 0; i < depth; i++) v = { n: v };
  return v;
}

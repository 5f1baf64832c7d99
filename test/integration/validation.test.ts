import mongoose from 'mongoose';
import { io } from 'socket.io-client';
import { testDbName, testDbUrl } from '../helpers/db';
import { useCluster } from '../helpers/use-cluster';
import { WAIT_MS } from '../helpers/wait';
import { NAMESPACES } from '../../protocol/events';

describe('validation of batches and payloads', () => {
  const c = useCluster({ dbName: testDbName('valid'), feeder: true });
  let conn: mongoose.Connection;
  beforeAll(async () => {
    conn = await mongoose.createConnection(testDbUrl(c.dbName)).asPromise();
  });
  afterAll(async () => {
    await conn?.close();
  });

  test('a malformed batch is rejected as a whole, with one clear error per bad task, and nothing is stored', async () => {
    const err = await c.feeder
      .add([
        { id: 'fine', module: 'ok', params: [1] },
        { module: '../../etc/passwd' },
        { module: 'ok', params: 'not-an-array' },
        { module: 'ok', priority: 'high' },
        { params: [] },
        { module: '/abs/path' },
        { module: 'ok', bogus: true },
      ] as never)
      .then(
        () => null,
        (e: unknown) =>
          e as { code: string; message: string; details: { issues: { path: string; message: string }[] } },
      );
    expect(err).not.toBeNull();
    expect(err!.code).toBe('EVALIDATION');
    const paths = err!.details.issues.map((i) => i.path);
    expect(paths).toEqual(
      expect.arrayContaining([
        'tasks[1].module',
        'tasks[2].params',
        'tasks[3].priority',
        'tasks[4].module',
        'tasks[5].module',
        'tasks[6]',
      ]),
    );
    expect(paths.some((p) => p.startsWith('tasks[0]'))).toBe(false);
    expect(err!.message).toContain('tasks[1].module: must not contain ".."');
    expect(err!.message).toContain('tasks[5].module: must not be an absolute path');
    await c.master.flushed(); // anything durable would be in `tasks` now
    expect(await conn.collection('tasks').countDocuments({})).toBe(0);
    expect(await conn.collection('task_journal').countDocuments({})).toBe(0);
  });

  test('ids are unique within the master: a duplicate in the batch or a taken id is refused', async () => {
    await c.feeder.add([{ id: 'taken', module: 'ok' }]);
    await expect(c.feeder.add([{ id: 'taken', module: 'ok' }])).rejects.toMatchObject({
      message: expect.stringContaining('tasks[0].id: id "taken" is already taken'),
    });
    await expect(
      c.feeder.add([
        { id: 'twice', module: 'ok' },
        { id: 'twice', module: 'ok' },
      ]),
    ).rejects.toMatchObject({
      message: expect.stringContaining('tasks[1].id: duplicate id "twice" (also tasks[0])'),
    });
    expect(await conn.collection<{ _id: string }>('tasks').countDocuments({ _id: 'twice' })).toBe(0);
  });

  test('a request that is not a batch at all is refused with the field named', async () => {
    await expect(c.feeder.add('nope' as never)).rejects.toMatchObject({
      code: 'EVALIDATION',
      message: expect.stringContaining('tasks'),
    });
  });

  test('a malformed runner:hello is refused naming the event, the field and the reason; a good one is then taken', async () => {
    const socket = io(`${c.master.url}${NAMESPACES.runner}`, {
      transports: ['websocket'],
      reconnection: false,
      forceNew: true,
    });
    try {
      const reply = (await socket
        .timeout(WAIT_MS)
        .emitWithAck('runner:hello', { runnerId: 'bad-hello', slots: 'four', workers: 1 })) as {
        ok: boolean;
        error: { code: string; message: string; details: { issues: { path: string }[] } };
      };
      expect(reply.ok).toBe(false);
      expect(reply.error.code).toBe('EVALIDATION');
      expect(reply.error.message).toMatch(/^invalid runner:hello payload \(1 issue\): hello\.slots: /);
      expect(reply.error.details.issues.map((i) => i.path)).toEqual(['hello.slots']);
      expect(c.master.listRunners().some((r) => r.id === 'bad-hello')).toBe(false);
      // The refusal left the connection usable: the same socket says a correct hello and is a runner.
      await expect(
        socket.timeout(WAIT_MS).emitWithAck('runner:hello', { runnerId: 'bad-hello', slots: 4, workers: 1 }),
      ).resolves.toMatchObject({ ok: true, runnerId: 'bad-hello' });
    } finally {
      socket.close();
    }
  });
});

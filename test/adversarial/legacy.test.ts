/**
 * The original protocol on the default namespace, against a real master with a token: refused adds
 * are answered with `task:error` instead of killing the process, and `task:done` counts only for a
 * task sent to that very socket.
 */
import type { Socket } from 'socket.io-client';
import { connectError, emitRaw, nestedJson, rawSocket, useAttackedCluster, TOKEN } from './cluster';
import { nextEvent } from '../helpers/wait';

interface WireErr {
  code: string;
  message: string;
}

describe('adversarial: original protocol', () => {
  const sockets: Socket[] = [];

  const c = useAttackedCluster({ token: TOKEN });
  afterEach(() => {
    for (const s of sockets.splice(0)) s.close();
  });

  const legacy = async () => {
    const s = await rawSocket(c.master.url, '/', { query: { token: TOKEN } });
    sockets.push(s);
    return s;
  };

  test('the default namespace refuses a missing or wrong token (real master)', async () => {
    expect((await connectError(c.master.url, '/')).message).toMatch(/EAUTH/);
    // A wrong token in the handshake itself is refused before the WebSocket upgrade (a bare 403).
    expect((await connectError(c.master.url, '/', { query: { token: 'nope' } })).message).toMatch(
      /EAUTH|websocket error/,
    );
    await c.assertAlive();
  });

  test('task:add with params nested 10,000 deep is refused with task:error naming the field; the process lives', async () => {
    const s = await legacy();
    const err = nextEvent<WireErr>(s, 'task:error');
    void emitRaw(s, 'task:add', `{"module":"ok","params":[${nestedJson(10_000)}]}`);
    expect(await err).toMatchObject({
      code: 'EVALIDATION',
      message: expect.stringContaining('tasks[0].params'),
    });
    expect(c.master.scheduler.tasks.size).toBe(0);
    await c.assertAlive();
  });

  test('task:add with 100,000 dependency ids is refused with task:error; the process lives', async () => {
    const s = await legacy();
    const dependencies = Array.from({ length: 100_000 }, (_, i) => i.toString(36));
    const err = nextEvent<WireErr>(s, 'task:error');
    s.emit('task:add', { module: 'ok', dependencies });
    expect(await err).toMatchObject({
      code: 'EVALIDATION',
      message: expect.stringContaining('tasks[0].dependencies'),
    });
    await c.assertAlive();
  });

  test('task:done with the _id of a queued task never sent to this socket is refused; the task is untouched', async () => {
    const s = await legacy();
    const added = nextEvent<{ _id: string; id: string }[]>(s, 'task:added');
    // Pinned to a runner that is not there: it stays queued.
    const f = await c.startFeeder();
    const [ref] = await f.add([{ module: 'ok', params: ['real'], runner: 'nobody-here' }]);
    s.emit('task:add', { module: 'ok' });
    const [mine] = await added;
    const err = nextEvent<WireErr>(s, 'task:error');
    s.emit('task:done', JSON.stringify({ _id: ref._id, result: 'forged' }));
    expect(await err).toMatchObject({ code: 'ESTALE' });
    s.emit('task:done', { _id: mine._id, result: 'forged too' });
    expect(await nextEvent<WireErr>(s, 'task:error')).toMatchObject({ code: 'ESTALE' });
    expect(c.master.scheduler.tasks.get(ref.id)?.state).toBe('ready');
    expect(c.master.scheduler.finals.get(ref.id)).toBeUndefined();
    expect(await f.cancel([ref.id, mine.id])).toHaveLength(2);
    await c.assertAlive();
  });

  test('task:done for a task sent to this socket is taken', async () => {
    const s = await legacy();
    const f = await c.startFeeder();
    const sent = nextEvent<string>(s, 'task:send');
    s.emit('task:request');
    const [ref] = await f.add([{ module: 'ok', params: ['legacy'] }]);
    const task = JSON.parse(await sent) as { _id: string };
    expect(task._id).toBe(ref._id);
    s.emit('task:done', JSON.stringify({ _id: task._id, result: 'from legacy' }));
    expect(await f.outcome(ref.id)).toMatchObject({ state: 'done', result: 'from legacy' });
    await c.assertAlive();
  });

  test('malformed original-protocol payloads get task:error, never a crash', async () => {
    const s = await legacy();
    for (const bad of ['{not json', 42, null, [1, 2], { _id: 5 }]) {
      const err = nextEvent<WireErr>(s, 'task:error');
      s.emit('task:done', bad);
      expect(await err).toMatchObject({ code: 'EVALIDATION' });
    }
    const err = nextEvent<WireErr>(s, 'task:error');
    s.emit('task:add', { module: '../escape' });
    expect(await err).toMatchObject({ code: 'EVALIDATION' });
    await c.assertAlive();
  });
});

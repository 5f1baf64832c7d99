/**
 * Limits at the edge, on a real master: message size before authentication, task size and nesting
 * checked before anything changes, durations the timers can honour, cross-origin sockets.
 */
import { Manager, type Socket } from 'socket.io-client';
import { Master } from '../../master/master';
import { resolveRunnerOptions } from '../../runner/config';
import { testMongoUrl } from '../helpers/db';
import {
  httpRequest,
  connectError,
  emitRaw,
  nestedJson,
  rawSocket,
  useAttackedCluster,
  TOKEN,
} from './cluster';
import { within, WAIT_MS } from '../helpers/wait';

interface AddReply {
  ok: boolean;
  error?: { code: string; message: string };
  tasks?: { id: string }[];
}

const MESSAGE_LIMIT = 256 * 1024;

describe('adversarial: limits', () => {
  const sockets: Socket[] = [];

  const c = useAttackedCluster({
    token: TOKEN,
    maxMessageBytes: MESSAGE_LIMIT,
    maxTaskBytes: 64 * 1024,
    queueLimit: 10,
  });
  afterEach(() => {
    for (const s of sockets.splice(0)) s.close();
  });

  const feederSocket = async () => {
    const s = await rawSocket(c.master.url, '/feeder', { token: TOKEN });
    sockets.push(s);
    return s;
  };

  test('tasks:add with params nested 10,000 deep is refused naming the task and field, and changes nothing', async () => {
    const s = await feederSocket();
    const queued = c.master.scheduler.queuedCount();
    const reply = (await emitRaw(
      s,
      'tasks:add',
      `{"tasks":[{"id":"deep-1","module":"ok","params":[${nestedJson(10_000)}]}]}`,
      true,
    )) as AddReply;
    expect(reply).toMatchObject({
      ok: false,
      error: {
        code: 'EVALIDATION',
        message: expect.stringContaining('tasks[0].params: nested deeper than 64'),
      },
    });
    // Nothing was kept: the id is free and the queue limit is not used up.
    expect(c.master.scheduler.tasks.has('deep-1')).toBe(false);
    expect(c.master.scheduler.queuedCount()).toBe(queued);
    const f = await c.startFeeder();
    const runner = await c.startRunner({ runnerId: 'limits-r' });
    const [o] = await f.work([{ id: 'deep-1', module: 'ok', params: [[[1]]] }]);
    expect(o).toMatchObject({ state: 'done', result: [[[1]]] });
    await runner.close();
    await c.assertAlive();
  });

  test('a task larger than maxTaskBytes is refused with EVALIDATION naming it', async () => {
    const f = await c.startFeeder();
    const big = 'y'.repeat(100 * 1024);
    await expect(
      f.add([{ module: 'ok' }, { id: 'too-big', module: 'ok', params: [big] }]),
    ).rejects.toMatchObject({
      code: 'EVALIDATION',
      message: expect.stringContaining("tasks[1]: larger than the master's --max-task-bytes"),
    });
    expect(c.master.scheduler.tasks.has('too-big')).toBe(false);
    await c.assertAlive();
  });

  test('durations beyond what timers honour (2^31 ms) are refused; 2^31-1 is accepted', async () => {
    const f = await c.startFeeder();
    for (const field of ['runTimeout', 'timeout', 'assignTimeout'])
      await expect(f.add([{ module: 'ok', [field]: 2 ** 31 }])).rejects.toMatchObject({
        code: 'EVALIDATION',
        message: expect.stringContaining(`tasks[0].${field}: must be at most 2147483647`),
      });
    const runner = await c.startRunner({ runnerId: 'long-timeout' });
    const [o] = await f.work([
      { module: 'slow', params: [50], runTimeout: 2 ** 31 - 1, runner: 'long-timeout' },
    ]);
    expect(o).toMatchObject({ state: 'done' });
    await runner.close();
    await c.assertAlive();
  });

  test('master and runner options beyond what timers honour are refused at start-up', async () => {
    expect(() => new Master({ mongoUrl: testMongoUrl(), disconnectGraceMs: 2 ** 31 })).toThrow(
      /disconnectGraceMs/,
    );
    expect(() => new Master({ mongoUrl: testMongoUrl(), recoveryGraceMs: 2 ** 31 - 1 })).not.toThrow();
    expect(() => resolveRunnerOptions({ shutdownGraceMs: 2 ** 31 })).toThrow(/shutdownGraceMs/);
    expect(() => resolveRunnerOptions({ ackTimeoutMs: 2 ** 31 })).toThrow(/ackTimeoutMs/);
    await c.assertAlive();
  });

  test('a connect packet over maxMessageBytes, with no valid token, closes that connection unread', async () => {
    const m = new Manager(c.master.url, {
      transports: ['websocket'],
      reconnection: false,
      autoConnect: false,
    });
    await new Promise<void>((resolve, reject) => m.open((err) => (err ? reject(err) : resolve())));
    const closed = new Promise<string>((resolve) =>
      m.engine.once('close', (reason: string) => resolve(reason)),
    );
    // A namespace CONNECT whose auth is larger than the limit: the transport refuses it before any
    // token check could run.
    m.engine.write(`0/feeder,${JSON.stringify({ token: 'z'.repeat(MESSAGE_LIMIT + 1) })}`);
    expect(await within(WAIT_MS, closed, 'the transport closed on an oversized CONNECT')).toMatch(
      /transport (close|error)/,
    );
    // Under the limit, the same unauthenticated connect is refused by the token check.
    expect((await connectError(c.master.url, '/feeder', { token: 'z'.repeat(1000) })).message).toMatch(
      /EAUTH|websocket error/,
    );
    await c.assertAlive();
  });

  test('a message over maxMessageBytes closes its connection before it is parsed, even with a valid token; one under it is answered', async () => {
    const s = await feederSocket();
    // Under the limit: parsed, and refused by the add's own checks (the task is over maxTaskBytes).
    const big = JSON.stringify({ tasks: [{ module: 'ok', params: ['y'.repeat(MESSAGE_LIMIT - 1024)] }] });
    expect(await emitRaw(s, 'tasks:add', big, true)).toMatchObject({
      ok: false,
      error: { code: 'EVALIDATION' },
    });
    const closed = new Promise<string>((resolve) => s.once('disconnect', (reason) => resolve(reason)));
    void emitRaw(
      s,
      'tasks:add',
      JSON.stringify({ tasks: [{ module: 'ok', params: ['z'.repeat(MESSAGE_LIMIT)] }] }),
      true,
    ).catch(() => undefined);
    expect(await within(WAIT_MS, closed, 'the transport closed on an oversized message')).toMatch(
      /transport (close|error)/,
    );
    await c.assertAlive();
  });

  test('the feeder splits a batch larger than the message limit into several adds; every task runs', async () => {
    const f = await c.startFeeder({ maxMessageBytes: MESSAGE_LIMIT });
    const runner = await c.startRunner({ runnerId: 'split-r', slots: 4 });
    const payload = 'p'.repeat(40 * 1024);
    // 9 tasks of ~40 KB: about 360 KB, over one 256 KB message. The last depends on the first.
    const tasks = Array.from({ length: 9 }, (_, i) => ({
      id: `split-${i}`,
      module: 'ok',
      params: [i, payload],
      runner: 'split-r',
      dependencies: i === 0 ? ['split-8'] : [],
    }));
    const outcomes = await f.work(tasks);
    expect(outcomes.map((o) => o.state)).toEqual(new Array(9).fill('done'));
    expect(outcomes.map((o) => (o.result as unknown[])[0])).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8]);
    await runner.close();
    await c.assertAlive();
  });

  test('a batch between the room of one message and the whole message limit goes in two adds, never one message over the limit', async () => {
    const f = await c.startFeeder({ maxMessageBytes: MESSAGE_LIMIT });
    const runner = await c.startRunner({ runnerId: 'room-r', slots: 4 });
    const frame = (i: number) =>
      JSON.stringify({ id: `room-${i}`, module: 'ok', params: [''], runner: 'room-r' });
    // Five tasks whose JSON (with separators) adds up to 8 bytes under the message limit: more than
    // the room (the limit less the envelope), and with the event name and batch fields around them,
    // more than the transport takes in one message.
    const target = MESSAGE_LIMIT - 8;
    const each = Math.floor(target / 5);
    const tasks = Array.from({ length: 5 }, (_, i) => {
      const size = (i === 4 ? target - 4 * each : each) - 1;
      return {
        id: `room-${i}`,
        module: 'ok',
        params: ['p'.repeat(size - frame(i).length)],
        runner: 'room-r',
      };
    });
    expect(tasks.reduce((n, t) => n + Buffer.byteLength(JSON.stringify(t)) + 1, 0)).toBe(target);
    const disconnects: unknown[] = [];
    f.on('disconnect', (reason) => disconnects.push(reason));
    const outcomes = await within(WAIT_MS, f.work(tasks), 'the batch near the message limit done');
    expect(outcomes.map((o) => o.state)).toEqual(new Array(5).fill('done'));
    expect(disconnects).toEqual([]);
    await runner.close();
    await c.assertAlive();
  });

  test('a token given in the handshake is checked before the upgrade: wrong is a 403', async () => {
    const polling = await httpRequest(c.master.url, {
      path: '/socket.io/?EIO=4&transport=polling',
      headers: { authorization: 'Bearer wrong-token' },
    });
    expect(polling.status).toBe(403);
    expect(polling.body).toContain('EAUTH');
    const good = await httpRequest(c.master.url, {
      path: '/socket.io/?EIO=4&transport=polling',
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    expect(good.status).toBe(200);
    await c.assertAlive();
  });
});

describe('adversarial: cross-origin sockets, no token', () => {
  const c = useAttackedCluster({ allowOrigins: ['http://dash.example:8443'] });

  test('a WebSocket with a foreign Origin is refused by a master without a token; its own and allowed origins connect', async () => {
    for (const nsp of ['/', '/feeder', '/runner']) {
      const err = await connectError(c.master.url, nsp, { extraHeaders: { origin: 'http://evil.example' } });
      expect(err.message).toMatch(/websocket error|EORIGIN/);
    }
    const polling = await httpRequest(c.master.url, {
      path: '/socket.io/?EIO=4&transport=polling',
      headers: { origin: 'http://evil.example' },
    });
    expect(polling.status).toBe(403);
    expect(polling.body).toContain('EORIGIN');
    for (const origin of [new URL(c.master.url).origin, 'http://dash.example:8443']) {
      const s = await rawSocket(c.master.url, '/feeder', { extraHeaders: { origin } });
      s.close();
    }
    await c.assertAlive();
  });
});

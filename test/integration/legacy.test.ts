import type { EventEmitter } from 'node:events';
import { io, type Socket } from 'socket.io-client';
import { waitForEvent } from '../helpers/wait';
import { testDbName } from '../helpers/db';
import { useCluster } from '../helpers/use-cluster';

/** A client that speaks only the original taskmaster events, as the slides' runner and feeder did. */
describe('original protocol on the default namespace', () => {
  const c = useCluster({ dbName: testDbName('legacy') });
  const sockets: Socket[] = [];
  const connect = (query?: Record<string, string>) => {
    const s = io(c.url, { transports: ['websocket'], reconnection: false, query });
    sockets.push(s);
    return s;
  };

  afterEach(() => {
    // Each test brings its own clients; a runner left requesting would take the next test's work.
    for (const s of sockets.splice(0)) s.close();
  });

  test('task:add → task:added, task:request → task:send, task:done → result stored', async () => {
    const feeder = connect();
    const runner = connect();
    const added = waitForEvent<[Array<{ _id: string; module: string; params: unknown[]; priority: number }>]>(
      feeder as unknown as EventEmitter,
      'task:added',
    );
    feeder.emit('task:add', [
      { module: 'sampleTask', priority: 25, params: [{ ticker: 'AAPL' }] },
      { module: 'sampleTask', priority: 30, params: { ticker: 'MSFT' }, dependencies: [] },
    ]);
    const [stored] = await added;
    expect(stored).toHaveLength(2);
    expect(stored[0]).toMatchObject({ module: 'sampleTask', priority: 25, params: [{ ticker: 'AAPL' }] });
    expect(stored[1].params).toEqual([{ ticker: 'MSFT' }]); // a lone value is wrapped, as the original schema did
    for (const t of stored) expect(t._id).toMatch(/^[0-9a-f]{24}$/);

    const received: Array<{ _id: string; module: string; params: unknown[]; priority: number }> = [];
    runner.on('task:send', (json: string) => {
      expect(typeof json).toBe('string');
      const task = JSON.parse(json) as { _id: string; module: string; params: unknown[]; priority: number };
      received.push(task);
      runner.emit('task:done', JSON.stringify({ ...task, result: `done ${JSON.stringify(task.params[0])}` }));
      runner.emit('task:request');
    });
    const outcomes = waitForEvent<[unknown]>(
      c.master,
      'outcomes',
      () => c.master.scheduler.finals.has(stored[0]._id) && c.master.scheduler.finals.has(stored[1]._id),
    );
    runner.emit('task:request');
    await outcomes;
    expect(received.map((t) => t.priority)).toEqual([30, 25]); // higher priority first
    expect(received[0]).toMatchObject({
      _id: stored[1]._id,
      module: 'sampleTask',
      params: [{ ticker: 'MSFT' }],
    });
    expect(c.master.scheduler.finals.get(stored[0]._id)).toMatchObject({
      state: 'done',
      result: 'done {"ticker":"AAPL"}',
    });
  });

  test('task:done as an object with an error fails the attempt, and the task is retried', async () => {
    const feeder = connect();
    const runner = connect();
    const added = waitForEvent<[Array<{ _id: string }>]>(feeder as unknown as EventEmitter, 'task:added');
    feeder.emit('task:add', { module: 'flaky', params: [] });
    const [[task]] = await added;
    let calls = 0;
    runner.on('task:send', (json: string) => {
      const t = JSON.parse(json) as { _id: string };
      calls++;
      if (calls === 1) runner.emit('task:done', { _id: t._id, error: { message: 'first try fails' } });
      else runner.emit('task:done', { _id: t._id, result: 'second try works' });
      runner.emit('task:request');
    });
    const done = waitForEvent(c.master, 'outcomes', () => c.master.scheduler.finals.has(task._id));
    runner.emit('task:request');
    await done;
    expect(calls).toBe(2);
    expect(c.master.scheduler.finals.get(task._id)).toMatchObject({
      state: 'done',
      attempts: 2,
      result: 'second try works',
    });
  });

  test("task:send gives a dependent its dependencies' results", async () => {
    const feeder = connect();
    const runner = connect();
    const sent: { _id: string; dependencies?: Record<string, unknown> }[] = [];
    runner.on('task:send', (json: string) => {
      const t = JSON.parse(json) as { _id: string; dependencies?: Record<string, unknown> };
      sent.push(t);
      runner.emit('task:done', { _id: t._id, result: sent.length === 1 ? 5 : 'dependent done' });
      runner.emit('task:request');
    });
    runner.emit('task:request');
    const resulted = (result: unknown) =>
      waitForEvent<[{ result?: unknown }[]]>(c.master, 'outcomes', (os) =>
        os.some((o) => o.result === result),
      );
    const first = waitForEvent<[Array<{ _id: string }>]>(feeder as unknown as EventEmitter, 'task:added');
    const produced = resulted(5);
    feeder.emit('task:add', { module: 'produce', params: [] });
    const [[dep]] = await first;
    await produced;
    const second = waitForEvent<[Array<{ _id: string }>]>(feeder as unknown as EventEmitter, 'task:added');
    const consumed = resulted('dependent done');
    feeder.emit('task:add', { module: 'consume', params: [], dependencies: [dep._id] });
    const [[dependent]] = await second;
    await consumed;
    expect(sent[0].dependencies).toBeUndefined();
    expect(sent[1]).toMatchObject({ _id: dependent._id, dependencies: { [dep._id]: 5 } });
  });

  test('a malformed task:add gets task:error naming the field, and nothing is added', async () => {
    const feeder = connect();
    const error = waitForEvent<[{ code: string; message: string }]>(
      feeder as unknown as EventEmitter,
      'task:error',
    );
    const before = c.master.scheduler.stats.added;
    feeder.emit('task:add', [{ module: 'ok' }, { module: '../escape' }]);
    const [e] = await error;
    expect(e.code).toBe('EVALIDATION');
    expect(e.message).toContain('tasks[1].module');
    expect(c.master.scheduler.stats.added).toBe(before);
  });
});

import path from 'node:path';
import { Feeder } from '../../feeder/feeder';
import type { Master } from '../../master/master';
import type { TaskOutcome } from '../../protocol/schemas';
import type { Runner } from '../../runner/runner';
import { startRunner } from '../helpers/clients';
import { freePort, startMaster, testLogger } from '../helpers/cluster';
import { waitForEvent } from '../helpers/wait';
import { testDbName } from '../helpers/db';
import { useCluster } from '../helpers/use-cluster';

const EXAMPLE_TASKS = path.join(__dirname, '..', '..', 'tasks');

describe('the Feeder against a real master', () => {
  const c = useCluster({ dbName: testDbName('feeder-master') });
  let runner: Runner | null = null;
  afterEach(async () => {
    await runner?.close();
    runner = null;
  });

  test('a refused batch rejects with EVALIDATION whose message lists every issue, even past 20', async () => {
    const feeder = await c.startFeeder();
    const tasks = [
      { module: '../escape' },
      { module: 'ok', priority: 'high' },
      ...Array.from({ length: 23 }, (_, i) => ({ module: 'ok', dependencies: [`missing-${i}`] })),
    ];
    const err = await feeder.add(tasks as never).then(
      () => null,
      (e: unknown) => e as Error & { code: string; details: { issues: { path: string }[] } },
    );
    expect(err?.code).toBe('EVALIDATION');
    expect(err?.message).toContain('tasks[0].module: must not contain ".."');
    expect(err?.message).toContain('tasks[1].priority:');
    // Shape errors come first; the master reports unknown dependencies once the shapes are right.
    const fixed = tasks.slice(2);
    const err2 = await feeder.add(fixed as never).catch((e: Error) => e);
    const lines = (err2 as Error).message.split('\n').slice(1);
    expect(lines).toHaveLength(23);
    expect(lines[22]).toBe('  tasks[22].dependencies[0]: unknown task id "missing-22"');
  });

  test('work() resolves in input order, with failed tasks as outcomes rather than a rejection', async () => {
    runner = await startRunner(c.url, { workers: 2, slots: 4 });
    const feeder = await c.startFeeder();
    const seen: [string, number][] = [];
    const outcomes = await feeder.workIndividual(
      [
        { id: 'w-slow', module: 'timed', params: [150, 'slow'] },
        { id: 'w-fail', module: 'throws', params: ['nope', 'EBAD', true] },
        { id: 'w-fast', module: 'ok', params: [1, 2] },
      ],
      {},
      (o, i) => seen.push([o.id, i]),
    );
    expect(outcomes.map((o) => [o.id, o.state])).toEqual([
      ['w-slow', 'done'],
      ['w-fail', 'failed'],
      ['w-fast', 'done'],
    ]);
    expect(outcomes[1].error).toMatchObject({ code: 'EBAD', message: 'nope' });
    expect(outcomes[2].result).toEqual([1, 2]);
    expect(new Map(seen)).toEqual(
      new Map([
        ['w-slow', 0],
        ['w-fail', 1],
        ['w-fast', 2],
      ]),
    );
  });

  test('progress reported by a task reaches the feeder that added it', async () => {
    runner = await startRunner(c.url, { tasks: [EXAMPLE_TASKS] });
    const feeder = await c.startFeeder();
    const progress: number[] = [];
    feeder.on('progress', (p) => {
      if (p.id === 'p-import') progress.push(p.progress);
    });
    const [outcome] = await feeder.work([{ id: 'p-import', module: 'import', params: [{ ticker: 'IBM' }] }]);
    expect(outcome).toMatchObject({ state: 'done', result: { ticker: 'IBM' } });
    expect(progress).toEqual([0.5, 1]);
  });

  test('close() rejects waiting work() calls and can be called twice', async () => {
    const feeder = await c.startFeeder();
    // No runner: the task stays queued. Added first, so that work() is past its add and waiting.
    const task = { id: 'c-waiting', module: 'ok' };
    await feeder.add([task]);
    const pending = feeder.work([task]);
    await feeder.close();
    await feeder.close();
    await expect(pending).rejects.toThrow(
      'the feeder was closed before the outcome of task "c-waiting" arrived',
    );
    await expect(feeder.add([{ module: 'ok' }])).rejects.toThrow('the feeder is closed');
  });
});

describe('the Feeder across a graceful master restart', () => {
  const dbName = testDbName('feeder-restart');
  let port: number;
  let master: Master | null = null;
  let runner: Runner | null = null;
  let feeder: Feeder | null = null;
  afterAll(async () => {
    await feeder?.close();
    await runner?.close();
    await master?.close();
  });

  test('reconnects by itself and gets the outcome of a task that finished after the restart', async () => {
    port = await freePort();
    master = await startMaster(dbName, { port });
    feeder = new Feeder({
      master: master.url,
      logger: testLogger(),
      reconnectDelayMs: 50,
      reconnectDelayMaxMs: 200,
    });
    const reconnected = new Promise<void>((resolve) => {
      let connects = 0;
      feeder?.on('connect', () => ++connects === 2 && resolve());
    });
    await feeder.ready();
    // No runner yet: the task is stored and waits.
    await feeder.add([{ id: 'r-1', module: 'ok', params: ['after restart'] }]);
    const result = feeder.outcome('r-1');
    // The new master knows nothing of this feeder: the outcome arrives only because the feeder
    // asks for its pending ids again after reconnecting.
    await master.close();
    master = await startMaster(dbName, { port });
    await reconnected;
    runner = await startRunner(master.url);
    const outcome: TaskOutcome = await result;
    expect(outcome).toMatchObject({ id: 'r-1', state: 'done', result: ['after restart'] });
  });
});

describe('the Feeder dropped by the master on purpose', () => {
  const c = useCluster({ dbName: testDbName('feeder-dropped') });

  test('reconnects, although Socket.IO leaves that to the client after a server-side disconnect', async () => {
    const feeder = new Feeder({
      master: c.url,
      logger: testLogger(),
      reconnectDelayMs: 50,
      reconnectDelayMaxMs: 200,
    });
    try {
      await feeder.ready();
      const dropped = waitForEvent(feeder, 'disconnect');
      const back = waitForEvent(feeder, 'connect', () => true, 10_000);
      // The master's Socket.IO server, to disconnect the feeder's socket the way a server does.
      const io = (
        c.master as unknown as { io: { of(n: string): { disconnectSockets(close?: boolean): void } } }
      ).io;
      io.of('/feeder').disconnectSockets();
      expect(await dropped).toEqual(['io server disconnect']);
      await back;
      expect(await feeder.add([{ module: 'ok' }])).toHaveLength(1);
    } finally {
      await feeder.close();
    }
  });
});

describe('the Feeder without a master', () => {
  test('add() fails after connectTimeoutMs, naming the master', async () => {
    const port = await freePort();
    const feeder = new Feeder({ master: `http://127.0.0.1:${port}`, connectTimeoutMs: 300 });
    try {
      const started = Date.now();
      await expect(feeder.add([{ module: 'ok' }])).rejects.toThrow(
        `cannot reach the master at http://127.0.0.1:${port} within 300 ms`,
      );
      expect(Date.now() - started).toBeLessThan(5000);
    } finally {
      await feeder.close();
    }
  });
});

describe('the Feeder with a wrong token', () => {
  const c = useCluster({ dbName: testDbName('feeder-token'), masterOptions: { token: 'right-token' } });

  test('ready() rejects with EAUTH at once instead of waiting for the timeout', async () => {
    const feeder = new Feeder({ master: c.url, token: 'wrong', connectTimeoutMs: 20_000 });
    try {
      const started = Date.now();
      await expect(feeder.ready()).rejects.toMatchObject({ code: 'EAUTH' });
      expect(Date.now() - started).toBeLessThan(5000);
    } finally {
      await feeder.close();
    }
  });
});

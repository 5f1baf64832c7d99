/**
 * The runner's side of the wire contract, against a scripted peer: a real Socket.IO server on
 * loopback, typed with the same event maps as the master, whose answers each test chooses (refuse the
 * handshake, withhold an ack, drop an attempt, cut the connection). The full master is exercised by
 * the other integration tests; here the point is what the runner sends and when.
 */
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Server, type Socket } from 'socket.io';
import { silentLogger } from '../../common/logger';
import { NAMESPACES, type MasterToRunner, type RunnerToMaster } from '../../protocol/events';
import type { AttemptResult, Hello, HelloReply } from '../../protocol/schemas';
import { Runner } from '../../runner/runner';
import type { RunnerOptions } from '../../runner/options';
import { nextEvent, within, WAIT_MS } from '../helpers/wait';

jest.setTimeout(30_000);

const FIXTURES = path.resolve(__dirname, '..', 'fixtures', 'tasks');
type PeerSocket = Socket<RunnerToMaster, MasterToRunner>;

interface Received {
  event: keyof RunnerToMaster;
  payload: unknown;
  socket: PeerSocket;
}

/** A Socket.IO server speaking the master's side of /runner, recording everything it receives. */
class ScriptedMaster extends EventEmitter {
  readonly log: Received[] = [];
  helloReply: (h: Hello) => HelloReply = (h) => ({ ok: true, runnerId: h.runnerId, drop: [] });
  /** When false, task:results are recorded but never acknowledged. */
  ackResults = true;
  private readonly server = http.createServer();
  readonly io = new Server(this.server);
  readonly sockets = new Set<PeerSocket>();

  constructor(token?: string) {
    super();
    const nsp = this.io.of(NAMESPACES.runner);
    if (token) {
      // Refuses as master/auth.ts does: the stable code travels in the error's data.
      nsp.use((s, next) => {
        if ((s.handshake.auth as { token?: string }).token === token) return next();
        const err = new Error('EAUTH: missing or wrong token') as Error & { data?: unknown };
        err.data = { code: 'EAUTH', message: 'missing or wrong token' };
        next(err);
      });
    }
    nsp.on('connection', (raw) => {
      const socket = raw as unknown as PeerSocket;
      this.sockets.add(socket);
      socket.on('disconnect', () => this.sockets.delete(socket));
      const record = (event: keyof RunnerToMaster, payload: unknown) => {
        const r = { event, payload, socket };
        this.log.push(r);
        this.emit('received', r);
      };
      socket.on('runner:hello', (h, ack) => {
        record('runner:hello', h);
        ack(this.helloReply(h));
      });
      socket.on('task:started', (p) => record('task:started', p));
      socket.on('task:progress', (p) => record('task:progress', p));
      socket.on('runner:modules', (p) => record('runner:modules', p));
      socket.on('task:results', (p, ack) => {
        record('task:results', p);
        if (this.ackResults) ack({ ok: true, accepted: p.results.length, stale: 0 });
      });
      socket.on('tasks:add', (req, ack) => {
        record('tasks:add', req);
        ack({
          ok: true,
          batch: 'b1',
          tasks: req.tasks.map((_, i) => ({ id: `added-${i}`, _id: `oid-${i}` })),
        });
      });
    });
  }

  async listen(): Promise<string> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  /** The next message of `event` (already received ones count) for which `test` holds. */
  next<T>(event: keyof RunnerToMaster, test: (p: T) => boolean = () => true, from = 0): Promise<T> {
    const hit = this.log.slice(from).find((r) => r.event === event && test(r.payload as T));
    if (hit) return Promise.resolve(hit.payload as T);
    let on!: (r: Received) => void;
    const seen = new Promise<T>((resolve) => {
      on = (r: Received) => {
        if (r.event === event && test(r.payload as T)) resolve(r.payload as T);
      };
      this.on('received', on);
    });
    const what = `"${event}" from the runner${test.length > 0 ? ` for which ${test.toString()}` : ''}`;
    return within(WAIT_MS, seen, what).finally(() => this.off('received', on));
  }

  assign(tasks: unknown[]): void {
    for (const s of this.sockets) s.emit('task:assign', { tasks } as never);
  }

  cancel(tasks: { id: string; attempt: number }[]): void {
    for (const s of this.sockets) s.emit('task:cancel', { tasks, reason: 'test' });
  }

  /** Cuts the connection under the runner, as a network failure would (the runner reconnects on its own). */
  cut(): void {
    for (const s of this.sockets) s.conn.close();
  }

  async close(): Promise<void> {
    this.io.disconnectSockets(true);
    await this.io.close();
  }
}

const task = (id: string, module: string, params: unknown[] = [], extra: Record<string, unknown> = {}) => ({
  id,
  attempt: 1,
  module,
  params,
  priority: 0,
  ...extra,
});
const resultsOf = (p: { results: AttemptResult[] }) => p.results;
const hasResult = (id: string) => (p: { results: AttemptResult[] }) => p.results.some((r) => r.id === id);
type Ref = { id: string; attempt: number };
/** Each report of an attempt's start: a `task:started`, or the `started` a `task:results` carries. */
const startsOf = (log: Received[], id: string): string[] =>
  log.flatMap((r) => {
    const p = r.payload as { tasks?: Ref[]; started?: Ref[] };
    if (r.event === 'task:started' && p.tasks?.some((t) => t.id === id)) return [r.event];
    if (r.event === 'task:results' && p.started?.some((t) => t.id === id)) return [r.event];
    return [];
  });

describe('runner ↔ master protocol', () => {
  let master: ScriptedMaster;
  let url: string;
  const runners: Runner[] = [];
  const start = async (opts: Partial<RunnerOptions> = {}) => {
    const r = new Runner({
      master: url,
      tasks: [FIXTURES],
      workers: 1,
      slots: 4,
      logger: silentLogger(),
      orphanWatchdog: false,
      ...opts,
    });
    runners.push(r);
    await r.start();
    return r;
  };

  beforeEach(async () => {
    master = new ScriptedMaster();
    url = await master.listen();
  });
  afterEach(async () => {
    for (const r of runners.splice(0)) await r.close();
    await master.close();
  });

  test('start() resolves after the hello ack; the hello describes the runner and its modules', async () => {
    const runner = await start({ runnerId: 'r-1', data: { zone: 'a' }, slots: 3 });
    const hello = await master.next<Hello>('runner:hello');
    expect(hello).toMatchObject({
      runnerId: 'r-1',
      hostname: os.hostname(),
      pid: process.pid,
      slots: 3,
      workers: 1,
      data: { zone: 'a' },
      running: [],
    });
    expect(hello.modules).toEqual(
      expect.arrayContaining([
        { name: 'ok', hash: expect.stringMatching(/^[0-9a-f]{16}$/) },
        { name: 'sub/nested', hash: expect.any(String) },
      ]),
    );
    expect(runner.runnerId).toBe('r-1');
  });

  test('an assignment is started, run and reported with its module hash; malformed ones are ignored', async () => {
    await start();
    // "broken" has no attempt, params or priority: it alone is left out, the rest of its batch runs.
    master.assign([
      { id: 'broken', module: 'ok' },
      task('a', 'ok', [1, 2]),
      task('b', 'throws', ['bad', 'EX', true]),
      task('c', 'nope'),
    ]);
    await master.next('task:results', hasResult('a'));
    await master.next('task:results', hasResult('c'));
    await master.next('task:results', hasResult('b'));
    // Its start went once: alone, or with its result when the task was over within the same tick.
    expect(startsOf(master.log, 'a')).toHaveLength(1);
    // A module that was not found never started.
    expect(startsOf(master.log, 'c')).toEqual([]);
    const all = master.log
      .filter((r) => r.event === 'task:results')
      .flatMap((r) => resultsOf(r.payload as { results: AttemptResult[] }));
    const hello = master.log[0].payload as Hello;
    const okHash = hello.modules?.find((m) => m.name === 'ok')?.hash;
    expect(all).toEqual(
      expect.arrayContaining([
        { id: 'a', attempt: 1, ok: true, result: [1, 2], moduleHash: okHash },
        {
          id: 'b',
          attempt: 1,
          ok: false,
          error: { code: 'EX', message: 'bad' },
          unrecoverable: true,
          moduleHash: expect.any(String),
        },
        {
          id: 'c',
          attempt: 1,
          ok: false,
          error: { code: 'EMODULE', message: expect.stringContaining('not found') },
          unrecoverable: true,
        },
      ]),
    );
    expect(all.some((r) => r.id === 'broken')).toBe(false);
  });

  test('results are batched: answerThreshold results go out in one message', async () => {
    await start({ answerThreshold: 3, answerDelayMs: 60_000 });
    master.assign([task('x1', 'ok'), task('x2', 'ok'), task('x3', 'ok')]);
    const batch = await master.next<{ results: AttemptResult[] }>('task:results');
    expect(batch.results.map((r) => r.id).sort()).toEqual(['x1', 'x2', 'x3']);
  });

  test('a partial batch goes out after answerDelayMs', async () => {
    const runner = await start({ answerThreshold: 10, answerDelayMs: 50 });
    const delivered = nextEvent<AttemptResult[]>(runner, 'delivered', {
      what: 'the runner delivered p1 and p2',
    });
    master.assign([task('p1', 'ok'), task('p2', 'ok')]);
    expect((await delivered).map((r) => r.id).sort()).toEqual(['p1', 'p2']);
    expect(master.log.filter((r) => r.event === 'task:results')).toHaveLength(1);
  });

  test('a result finished while disconnected stays in the outbox and is delivered after the next hello', async () => {
    const runner = await start({ reconnectDelayMs: 300, reconnectDelayMaxMs: 300 });
    master.assign([task('late', 'slow', [100])]);
    await master.next('task:started');
    const down = nextEvent(runner, 'disconnect', { what: 'the runner saw its connection cut' });
    const finished = nextEvent<AttemptResult>(runner, 'result', {
      what: 'task "late" finished while disconnected',
    });
    master.cut();
    await down;
    expect(await finished).toMatchObject({ id: 'late', ok: true });
    const mark = master.log.length;
    const hello = await master.next<Hello>('runner:hello', () => true, mark);
    expect(hello.running).toEqual([{ id: 'late', attempt: 1 }]);
    await master.next('task:results', hasResult('late'), mark);
    const order = master.log.slice(mark).map((r) => r.event);
    expect(order.indexOf('runner:hello')).toBeLessThan(order.indexOf('task:results'));
  });

  test('a result whose ack never came is sent again after a reconnect', async () => {
    const runner = await start();
    master.ackResults = false;
    master.assign([task('unacked', 'ok', ['v'])]);
    await master.next('task:results', hasResult('unacked'));
    master.ackResults = true;
    const delivered = nextEvent<AttemptResult[]>(runner, 'delivered', {
      what: 'the unacknowledged result delivered after the next hello',
    });
    const mark = master.log.length;
    master.cut();
    expect((await delivered).map((r) => r.id)).toEqual(['unacked']);
    expect((await master.next<Hello>('runner:hello', () => true, mark)).running).toEqual([
      { id: 'unacked', attempt: 1 },
    ]);
  });

  test('attempts the master drops in its hello reply are aborted and never reported', async () => {
    const runner = await start({ reconnectDelayMs: 20, reconnectDelayMaxMs: 50 });
    master.assign([task('dropme', 'slow', [30_000]), task('keep', 'slow', [1000])]);
    const startedOne = (id: string) => (p: { tasks: { id: string }[] }) => p.tasks.some((t) => t.id === id);
    await Promise.all([
      master.next('task:started', startedOne('dropme')),
      master.next('task:started', startedOne('keep')),
    ]);
    master.helloReply = (h) => ({ ok: true, runnerId: h.runnerId, drop: [{ id: 'dropme', attempt: 1 }] });
    const ready = nextEvent(runner, 'ready', { what: 'the runner ready again after the cut' });
    master.cut();
    await ready;
    expect(runner.running).toEqual([{ id: 'keep', attempt: 1 }]);
    await master.next('task:results', hasResult('keep'));
    const reported = master.log
      .filter((r) => r.event === 'task:results')
      .flatMap((r) => resultsOf(r.payload as { results: AttemptResult[] }));
    expect(reported.map((r) => r.id)).toEqual(['keep']);
  });

  test('task:cancel aborts the attempt without a result', async () => {
    const runner = await start();
    master.assign([task('c1', 'slow', [30_000])]);
    await master.next('task:started');
    master.cancel([{ id: 'c1', attempt: 1 }]);
    master.assign([task('after', 'ok')]);
    await master.next('task:results', hasResult('after'));
    expect(runner.running).toEqual([]);
    expect(
      master.log.some(
        (r) => r.event === 'task:results' && hasResult('c1')(r.payload as { results: AttemptResult[] }),
      ),
    ).toBe(false);
  });

  test('a task:cancel of several attempts stops each good entry; a malformed one is ignored on its own', async () => {
    const runner = await start();
    master.assign([task('m1', 'slow', [30_000]), task('m2', 'slow', [30_000]), task('m3', 'slow', [30_000])]);
    await Promise.all(
      ['m1', 'm2', 'm3'].map((id) =>
        master.next<{ tasks: Ref[] }>('task:started', (p) => p.tasks.some((t) => t.id === id)),
      ),
    );
    for (const s of master.sockets)
      s.emit('task:cancel', {
        tasks: [
          { id: 'm1', attempt: 1 },
          { id: 'm2', attempt: 'one' },
          { id: 'm3', attempt: 1 },
        ],
        reason: 'test',
      } as never);
    master.assign([task('after-cancel', 'ok')]);
    await master.next('task:results', hasResult('after-cancel'));
    expect(runner.running).toEqual([{ id: 'm2', attempt: 1 }]);
  });

  test('a task adds follow-up tasks through the master; run timeouts report ETO', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'taskmaster-proto-'));
    fs.writeFileSync(
      path.join(dir, 'spawner.js'),
      'module.exports = async function () { return this.add([{ module: "ok", params: [1] }]); };',
    );
    try {
      await start({ tasks: [dir, FIXTURES] });
      master.assign([task('parent', 'spawner'), task('too-slow', 'slow', [30_000], { runTimeout: 100 })]);
      expect(await master.next('tasks:add')).toEqual({ tasks: [{ module: 'ok', params: [1] }] });
      const p = await master.next<{ results: AttemptResult[] }>('task:results', hasResult('parent'));
      expect(p.results.find((r) => r.id === 'parent')).toMatchObject({
        ok: true,
        result: [{ id: 'added-0', _id: 'oid-0' }],
      });
      const t = await master.next<{ results: AttemptResult[] }>('task:results', hasResult('too-slow'));
      expect(t.results.find((r) => r.id === 'too-slow')).toMatchObject({ ok: false, error: { code: 'ETO' } });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a module added to a watched folder is announced with runner:modules', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'taskmaster-proto-'));
    try {
      await start({ tasks: [dir], watch: true });
      fs.writeFileSync(path.join(dir, 'fresh.js'), 'module.exports = () => 1;');
      const update = await master.next<{ modules: { name: string }[] }>('runner:modules', (p) =>
        p.modules.some((m) => m.name === 'fresh'),
      );
      expect(update.modules).toEqual([{ name: 'fresh', hash: expect.any(String) }]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('drain() resolves once nothing runs and every result is acknowledged', async () => {
    const runner = await start();
    master.assign([task('d1', 'slow', [100]), task('d2', 'slow', [150])]);
    await master.next('task:started');
    await runner.drain();
    expect(runner.running).toEqual([]);
    const reported = master.log
      .filter((r) => r.event === 'task:results')
      .flatMap((r) => resultsOf(r.payload as { results: AttemptResult[] }));
    expect(reported.map((r) => r.id).sort()).toEqual(['d1', 'd2']);
  });

  test('close() is idempotent and ends the child processes', async () => {
    const runner = await start({ workers: 2 });
    const pids = runner.pids;
    expect(pids).toHaveLength(2);
    await Promise.all([runner.close(), runner.close()]);
    for (const pid of pids) expect(() => process.kill(pid, 0)).toThrow();
  });
});

describe('runner handshake refused', () => {
  test('a wrong token makes start() fail with EAUTH', async () => {
    const master = new ScriptedMaster('s3cret');
    const url = await master.listen();
    const runner = new Runner({
      master: url,
      tasks: [FIXTURES],
      workers: 1,
      token: 'wrong',
      logger: silentLogger(),
      orphanWatchdog: false,
    });
    try {
      await expect(runner.start()).rejects.toMatchObject({
        code: 'EAUTH',
        message: expect.stringContaining('refused'),
      });
      expect(runner.pids).toEqual([]);
    } finally {
      await runner.close();
      await master.close();
    }
  });
});

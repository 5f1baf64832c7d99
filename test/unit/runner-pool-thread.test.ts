/**
 * The pool with `isolation: 'thread'`: the same protocol and the same guarantees as child processes
 * (runner-pool.test.ts), with worker threads in this process as the hosts.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ModuleLoader } from '../../runner/loader';
import { ChildPool, type JobOutcome, type PoolOptions } from '../../runner/pool';
import { capturingLogger } from '../helpers/capture';
import { waitForEvent, within, WAIT_MS } from '../helpers/wait';

jest.setTimeout(60_000);

const FIXTURES = path.resolve(__dirname, '..', 'fixtures', 'tasks');

/** Where a task ran: written into each harness's folder. */
const WHERE = `const { threadId, isMainThread } = require('node:worker_threads');
module.exports = async function (ms = 0, label = null) {
  if (ms > 0) await new Promise((resolve) => setTimeout(resolve, ms));
  return { label, pid: process.pid, threadId, isMainThread };
};`;

interface Where {
  label: unknown;
  pid: number;
  threadId: number;
  isMainThread: boolean;
}

let seq = 0;
async function harness(opts: Partial<PoolOptions> = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'taskmaster-thread-pool-'));
  fs.writeFileSync(path.join(dir, 'where.js'), WHERE);
  const { logger, lines } = capturingLogger();
  const loader = new ModuleLoader({ dirs: [FIXTURES, dir], watch: false, stableMs: 0, logger });
  await loader.start();
  const pool = new ChildPool({
    workers: 1,
    isolation: 'thread',
    killGraceMs: 300,
    execArgv: [],
    orphanWatchdog: false,
    logger,
    ...opts,
  });
  await pool.start();
  const run = (module: string, params: unknown[] = [], runTimeout?: number) => {
    const id = `t${++seq}`;
    const key = `${id}#1`;
    const outcome = new Promise<JobOutcome>((resolve, reject) => {
      const on = (k: string, o: JobOutcome) => {
        if (k !== key) return;
        pool.off('settled', on);
        resolve(o);
      };
      pool.on('settled', on);
      loader
        .resolve(module)
        .then(
          (mod) =>
            pool.run({ key, task: { id, attempt: 1, module, params, priority: 0 }, module: mod, runTimeout }),
          reject,
        );
    });
    return { key, outcome: within(WAIT_MS, outcome, `the outcome of ${module} (${key})`) };
  };
  const exec = (module: string, params?: unknown[], runTimeout?: number) =>
    run(module, params, runTimeout).outcome;
  const where = async (label: unknown = null): Promise<Where> => {
    const o = await exec('where', [0, label]);
    if (!o.ok) throw new Error(`where failed: ${o.error.message}`);
    return o.result as Where;
  };
  return {
    pool,
    lines,
    dir,
    run,
    exec,
    where,
    async close() {
      await pool.close();
      await loader.close();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
type Harness = Awaited<ReturnType<typeof harness>>;

const once = <T extends unknown[]>(pool: ChildPool, event: 'respawn' | 'started' | 'recycle'): Promise<T> =>
  waitForEvent<T>(pool, event, undefined, { what: `the pool's "${event}"` });

describe('runner thread pool', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await harness();
  });
  afterAll(() => h.close());

  test('a task runs in a worker thread of this process and returns its result; TypeScript and ES modules too', async () => {
    const at = await h.where('x');
    expect(at).toEqual({ label: 'x', pid: process.pid, threadId: expect.any(Number), isMainThread: false });
    expect(at.threadId).toBeGreaterThan(0);
    expect(h.pool.pids()).toEqual([]);
    expect(await h.exec('ok', [1, 'two'])).toEqual({ ok: true, result: [1, 'two'] });
    expect(await h.exec('ts-task', [{ a: 2, b: 3 }])).toEqual({
      ok: true,
      result: { id: expect.any(String), sum: 5 },
    });
    expect(await h.exec('esm-task', ['you'])).toMatchObject({ ok: true, result: { hello: 'hi you' } });
    expect(await h.exec('throws', ['nope', 'EBADINPUT', true])).toEqual({
      ok: false,
      error: { code: 'EBADINPUT', message: 'nope' },
      unrecoverable: true,
    });
  });

  test("a task's output, this.log, this.progress and this.add reach the runner", async () => {
    fs.writeFileSync(
      path.join(h.dir, 'chatty.js'),
      `module.exports = async function () {
        console.log('printed by a thread');
        this.log.info('hello from a thread', { n: 1 });
        this.progress(0.5);
        return { refs: await this.add([{ module: 'ok', params: [1] }]) };
      };`,
    );
    const progress: number[] = [];
    h.pool.on('progress', (_k, p) => progress.push(p));
    h.pool.on('add', (_key, _req, reply) =>
      reply({ ok: true, batch: 'b', tasks: [{ id: 'n1', _id: 'x1' }] }),
    );
    try {
      const { key, outcome } = h.run('chatty');
      expect(await outcome).toEqual({ ok: true, result: { refs: [{ id: 'n1', _id: 'x1' }] } });
      expect(progress).toEqual([0.5]);
      expect(h.lines).toContainEqual(
        expect.objectContaining({ message: 'hello from a thread', n: 1, taskId: key.split('#')[0] }),
      );
      // Output is read from the thread's own stream, so it may come after the result.
      await within(
        WAIT_MS,
        new Promise<void>((resolve) => {
          const check = () =>
            h.lines.some((l) => l.message === 'printed by a thread' && l.stream === 'stdout')
              ? resolve()
              : setTimeout(check, 10);
          check();
        }),
        'the printed line in the runner log',
      );
    } finally {
      h.pool.removeAllListeners('add');
      h.pool.removeAllListeners('progress');
    }
  });

  test('a module edited between two tasks: the second runs the new code in the same thread', async () => {
    const file = path.join(h.dir, 'hot.js');
    const code = (v: number) =>
      `module.exports = () => ({ version: ${v}, thread: require('node:worker_threads').threadId });`;
    fs.writeFileSync(file, code(1));
    const first = await h.exec('hot');
    fs.writeFileSync(file, code(2));
    const second = await h.exec('hot');
    expect(first).toMatchObject({ ok: true, result: { version: 1 } });
    expect(second).toMatchObject({ ok: true, result: { version: 2 } });
    expect((second as { result: { thread: number } }).result.thread).toBe(
      (first as { result: { thread: number } }).result.thread,
    );
  });

  test('a cancelled attempt reports nothing and its thread stays', async () => {
    const before = await h.where();
    const settled: string[] = [];
    const spy = (k: string) => settled.push(k);
    h.pool.on('settled', spy);
    const slow = h.run('slow', [30_000]);
    await once(h.pool, 'started');
    h.pool.cancel(slow.key);
    expect(await h.where()).toMatchObject({ threadId: before.threadId });
    h.pool.off('settled', spy);
    expect(settled).not.toContain(slow.key);
  });
});

describe('runner thread pool: ending threads', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await harness();
  });
  afterAll(() => h.close());

  test('runTimeout: a CPU-bound loop fails with ETO, its thread is terminated after the grace, and the next task runs in a new one', async () => {
    const before = await h.where();
    const respawned = once(h.pool, 'respawn');
    const started = Date.now();
    expect(await h.exec('cpu-loop', [], 200)).toEqual({
      ok: false,
      error: { code: 'ETO', message: expect.stringContaining('200 ms') },
    });
    await respawned;
    // 200 ms of run timeout and 300 ms of grace, not the loop's forever.
    expect(Date.now() - started).toBeLessThan(5000);
    const after = await h.where('next');
    expect(after).toMatchObject({ label: 'next', pid: process.pid });
    expect(after.threadId).not.toBe(before.threadId);
  });

  test("an uncaught error fails the thread's attempts with ECRASH, naming it; the thread is replaced", async () => {
    const before = await h.where();
    fs.writeFileSync(
      path.join(h.dir, 'async-throw.js'),
      'module.exports = function () { setTimeout(() => { throw new Error("late boom"); }, 20); };',
    );
    const neighbour = h.run('slow', [30_000]);
    await once(h.pool, 'started');
    const respawned = once(h.pool, 'respawn');
    expect(await h.exec('async-throw')).toEqual({
      ok: false,
      error: { code: 'ECRASH', message: expect.stringContaining('late boom') },
    });
    expect(await neighbour.outcome).toMatchObject({ ok: false, error: { code: 'ECRASH' } });
    await respawned;
    expect((await h.where()).threadId).not.toBe(before.threadId);
  });

  test('process.exit ends the thread, not the runner (ECRASH); signalling the runner itself is refused', async () => {
    expect(await h.exec('exit', [3])).toEqual({
      ok: false,
      error: { code: 'ECRASH', message: expect.stringContaining('worker thread exited (code 3)') },
    });
    // crash.js sends SIGKILL to its own pid, which in a thread is the runner's.
    expect(await h.exec('crash')).toEqual({
      ok: false,
      error: { code: 'ETASK', message: expect.stringContaining('refused') },
    });
    expect(await h.exec('ok', ['still here'])).toEqual({ ok: true, result: ['still here'] });
  });
});

describe('runner thread pool: recycling', () => {
  test('maxTasksPerWorker 3: seven tasks in a row run in three threads, 3 + 3 + 1', async () => {
    const h = await harness({ maxTasksPerWorker: 3 });
    try {
      const threads: number[] = [];
      for (let i = 0; i < 7; i++) threads.push((await h.where(i)).threadId);
      const [a, b, c] = [threads[0], threads[3], threads[6]];
      expect(threads).toEqual([a, a, a, b, b, b, c]);
      expect(new Set([a, b, c]).size).toBe(3);
    } finally {
      await h.close();
    }
  });

  test('maxWorkerMemoryMb: a thread whose heap a task left above the limit is replaced', async () => {
    const h = await harness({ maxWorkerMemoryMb: 64 });
    try {
      fs.writeFileSync(
        path.join(h.dir, 'hold-heap.js'),
        `const kept = [];
        module.exports = function (mb) {
          for (let i = 0; i < mb; i++) kept.push(new Array(128 * 1024).fill(i));
          return require('node:worker_threads').threadId;
        };`,
      );
      const before = await h.where();
      const recycled = once<[number | undefined, number | undefined, string]>(h.pool, 'recycle');
      expect(await h.exec('hold-heap', [100])).toEqual({ ok: true, result: before.threadId });
      const [, , reason] = await recycled;
      expect(reason).toContain('over 64 MB');
      expect((await h.where()).threadId).not.toBe(before.threadId);
    } finally {
      await h.close();
    }
  });
});

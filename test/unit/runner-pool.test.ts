import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { ModuleLoader } from '../../runner/loader';
import { capturingLogger } from '../helpers/capture';
import { ChildPool, type JobOutcome, type PoolOptions } from '../../runner/pool';
import { waitForEvent, within, WAIT_MS } from '../helpers/wait';

jest.setTimeout(60_000);

const ROOT = path.resolve(__dirname, '..', '..');
const FIXTURES = path.join(ROOT, 'test', 'fixtures', 'tasks');

interface Harness {
  pool: ChildPool;
  loader: ModuleLoader;
  lines: Record<string, unknown>[];
  dir: string;
  /** Runs one attempt and resolves with its outcome. */
  run(module: string, params?: unknown[], runTimeout?: number): { key: string; outcome: Promise<JobOutcome> };
  exec(module: string, params?: unknown[], runTimeout?: number): Promise<JobOutcome>;
  close(): Promise<void>;
}

let seq = 0;
async function harness(opts: Partial<PoolOptions> = {}): Promise<Harness> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'taskmaster-pool-'));
  const { logger, lines } = capturingLogger();
  // Files here are written whole before they are loaded: no wait for them to settle.
  const loader = new ModuleLoader({ dirs: [FIXTURES, dir], watch: false, stableMs: 0, logger });
  await loader.start();
  const pool = new ChildPool({
    workers: 1,
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
  return {
    pool,
    loader,
    lines,
    dir,
    run,
    exec: (module, params, runTimeout) => run(module, params, runTimeout).outcome,
    async close() {
      await pool.close();
      await loader.close();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

const once = <T extends unknown[]>(pool: ChildPool, event: 'respawn' | 'started' | 'recycle'): Promise<T> =>
  waitForEvent<T>(pool, event, undefined, { what: `the pool's "${event}"` });

describe('runner child pool', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await harness({ workers: 1 });
  });
  afterAll(() => h.close());

  test('runs CommonJS, TypeScript, ES module, subfolder and original-style tasks', async () => {
    expect(await h.exec('ok', [1, 'two', { three: 3 }])).toEqual({
      ok: true,
      result: [1, 'two', { three: 3 }],
    });
    expect(await h.exec('ts-task', [{ a: 2, b: 3 }])).toEqual({
      ok: true,
      result: { id: expect.any(String), sum: 5 },
    });
    expect(await h.exec('esm-task', ['you'])).toEqual({
      ok: true,
      result: { base: 'esm-task.mjs', url: true, hello: 'hi you' },
    });
    expect(await h.exec('sub/nested', [7])).toEqual({ ok: true, result: { nested: true, x: 7 } });
    expect(await h.exec('legacy-done', [{ ticker: 'AAPL' }])).toEqual({
      ok: true,
      result: { legacy: true, params: { ticker: 'AAPL' } },
    });
  });

  test('errors: a thrown error keeps its code, unrecoverable is carried, a non-function export is EMODULE', async () => {
    expect(await h.exec('throws', ['boom'])).toEqual({
      ok: false,
      error: { code: 'ETASK', message: 'boom' },
    });
    expect(await h.exec('throws', ['nope', 'EBADINPUT', true])).toEqual({
      ok: false,
      error: { code: 'EBADINPUT', message: 'nope' },
      unrecoverable: true,
    });
    expect(await h.exec('invalid-export')).toMatchObject({
      ok: false,
      error: { code: 'EMODULE' },
      unrecoverable: true,
    });
  });

  test('the first of return value, this.done and this.error wins; results are plain JSON', async () => {
    fs.writeFileSync(
      path.join(h.dir, 'first-wins.js'),
      'module.exports = function () { this.done("done"); this.error(new Error("late")); return "returned"; };',
    );
    fs.writeFileSync(path.join(h.dir, 'nothing.js'), 'module.exports = async function () {};');
    fs.writeFileSync(
      path.join(h.dir, 'bigint.js'),
      'module.exports = async function () { return { n: 1n }; };',
    );
    fs.writeFileSync(
      path.join(h.dir, 'dates.js'),
      'module.exports = () => ({ at: new Date(0), skip: undefined, f() {} });',
    );
    expect(await h.exec('first-wins')).toEqual({ ok: true, result: 'done' });
    expect(await h.exec('nothing')).toEqual({ ok: true, result: null });
    expect(await h.exec('bigint')).toMatchObject({
      ok: false,
      error: { code: 'ETASK', message: expect.stringContaining('JSON') },
    });
    expect(await h.exec('dates')).toEqual({ ok: true, result: { at: '1970-01-01T00:00:00.000Z' } });
  });

  test('this.log reaches the runner log with the task id; this.progress and this.add go through the parent', async () => {
    fs.writeFileSync(
      path.join(h.dir, 'chatty.js'),
      `module.exports = async function () {
        this.log.info('hello from task', { n: 1 });
        this.progress(50);
        const refs = await this.add([{ module: 'ok', params: [1] }]);
        const refused = await this.add({ module: 'ok' }).catch((e) => e.code);
        return { refs, refused };
      };`,
    );
    const progress: number[] = [];
    h.pool.on('progress', (_k, p) => progress.push(p));
    const asked: unknown[] = [];
    h.pool.on('add', (_key, req, reply) => {
      asked.push(req.tasks);
      reply(
        asked.length === 1
          ? { ok: true, batch: 'b1', tasks: [{ id: 'n1', _id: 'x1' }] }
          : { ok: false, error: { code: 'EQUEUEFULL', message: 'full' } },
      );
    });
    const { key, outcome } = h.run('chatty');
    expect(await outcome).toEqual({
      ok: true,
      result: { refs: [{ id: 'n1', _id: 'x1' }], refused: 'EQUEUEFULL' },
    });
    expect(asked).toEqual([[{ module: 'ok', params: [1] }], [{ module: 'ok' }]]);
    // Progress is a fraction: 50 is passed on as 1.
    expect(progress).toEqual([1]);
    expect(h.lines).toContainEqual(
      expect.objectContaining({
        level: 'info',
        message: 'hello from task',
        n: 1,
        taskId: key.split('#')[0],
        attempt: 1,
      }),
    );
    h.pool.removeAllListeners('add');
    h.pool.removeAllListeners('progress');
  });

  test('attempts overlap inside one child when slots exceed workers', async () => {
    const outcomes = await Promise.all([0, 1, 2].map((i) => h.exec('timed', [200, i])));
    const runs = outcomes.map((o) =>
      o.ok ? (o.result as { start: number; end: number; pid: number }) : null,
    );
    expect(new Set(runs.map((r) => r?.pid)).size).toBe(1);
    // Every run began before any of them ended.
    expect(Math.max(...runs.map((r) => r!.start))).toBeLessThan(Math.min(...runs.map((r) => r!.end)));
  });

  test('a module edited between two tasks: the second runs the new code in the same child', async () => {
    const file = path.join(h.dir, 'hot.js');
    fs.writeFileSync(file, 'module.exports = () => ({ version: 1, pid: process.pid });');
    const first = await h.exec('hot');
    fs.writeFileSync(file, 'module.exports = () => ({ version: 2, pid: process.pid });');
    const second = await h.exec('hot');
    expect(first).toMatchObject({ ok: true, result: { version: 1 } });
    expect(second).toMatchObject({ ok: true, result: { version: 2 } });
    expect((second as { result: { pid: number } }).result.pid).toBe(
      (first as { result: { pid: number } }).result.pid,
    );
  });

  test('a cancelled attempt reports nothing and its child stays', async () => {
    const before = h.pool.pids();
    const settled: string[] = [];
    const spy = (k: string) => settled.push(k);
    h.pool.on('settled', spy);
    const slow = h.run('slow', [30_000]);
    await once(h.pool, 'started');
    h.pool.cancel(slow.key);
    // The cancel reaches the child before the next start, so the abort is settled (and ignored) first.
    expect(await h.exec('timed', [0])).toMatchObject({ ok: true, result: { pid: before[0] } });
    h.pool.off('settled', spy);
    expect(settled).not.toContain(slow.key);
    expect(h.pool.pids()).toEqual(before);
  });
});

describe('runner child pool: dying children', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await harness({ workers: 1 });
  });
  afterAll(() => h.close());

  test('a crashing task fails with ECRASH along with its neighbours; the child is replaced and work goes on', async () => {
    const [oldPid] = h.pool.pids();
    const neighbour = h.run('slow', [30_000]);
    await once(h.pool, 'started');
    const respawned = once<[number]>(h.pool, 'respawn');
    const crashed = await h.exec('crash');
    expect(crashed).toEqual({
      ok: false,
      error: { code: 'ECRASH', message: expect.stringContaining('SIGKILL') },
    });
    expect(await neighbour.outcome).toMatchObject({ ok: false, error: { code: 'ECRASH' } });
    const [newPid] = await respawned;
    expect(newPid).not.toBe(oldPid);
    expect(await h.exec('timed', [0])).toMatchObject({ ok: true, result: { pid: newPid } });
  });

  test('a task calling process.exit, or throwing asynchronously, is a crash with an explanation', async () => {
    expect(await h.exec('exit', [0])).toEqual({
      ok: false,
      error: { code: 'ECRASH', message: expect.stringContaining('code 0') },
    });
    fs.writeFileSync(
      path.join(h.dir, 'async-throw.js'),
      'module.exports = function () { setTimeout(() => { throw new Error("late boom"); }, 1); };',
    );
    expect(await h.exec('async-throw')).toEqual({
      ok: false,
      error: { code: 'ECRASH', message: expect.stringContaining('late boom') },
    });
    expect(await h.exec('ok', ['still works'])).toEqual({ ok: true, result: ['still works'] });
  });

  test('runTimeout: a task honouring its signal fails with ETO and keeps its child', async () => {
    const [pid] = h.pool.pids();
    expect(await h.exec('slow', [30_000], 100)).toEqual({
      ok: false,
      error: { code: 'ETO', message: expect.stringContaining('100 ms') },
    });
    expect(await h.exec('timed', [0])).toMatchObject({ ok: true, result: { pid } });
  });

  test('runTimeout: a CPU-bound loop fails with ETO and its child is killed after the grace period', async () => {
    const [pid] = h.pool.pids();
    const respawned = once<[number]>(h.pool, 'respawn');
    const started = Date.now();
    expect(await h.exec('cpu-loop', [], 200)).toEqual({
      ok: false,
      error: { code: 'ETO', message: expect.any(String) },
    });
    expect(Date.now() - started).toBeLessThan(2000);
    await respawned;
    expect(isAlive(pid)).toBe(false);
    expect(await h.exec('ok', [1])).toEqual({ ok: true, result: [1] });
  });
});

describe('runner child pool: balance and lifetime', () => {
  test('an attempt goes to the child with the fewest running; children end with the pool', async () => {
    const h = await harness({ workers: 2 });
    const outcomes = await Promise.all([h.exec('timed', [150]), h.exec('timed', [150])]);
    const pids = outcomes.map((o) => (o.ok ? (o.result as { pid: number }).pid : 0));
    expect(new Set(pids).size).toBe(2);
    expect(h.pool.pids().sort()).toEqual([...pids].sort());
    await h.close();
    for (const pid of pids) expect(isAlive(pid)).toBe(false);
  });

  test('a child still stuck in a timed-out attempt gets no new work while another child is free', async () => {
    const h = await harness({ workers: 2, killGraceMs: 5000 });
    try {
      // Both children are idle, so the first one takes the spinning task.
      const [stuckPid, freePid] = h.pool.pids();
      const stuck = h.run('cpu-loop', [], 100);
      expect(await stuck.outcome).toMatchObject({ ok: false, error: { code: 'ETO' } });
      // By load alone the second task would tie and go to the first child, behind the loop.
      const runs = await Promise.all([h.exec('timed', [20]), h.exec('timed', [20])]);
      expect(runs.map((o) => (o.ok ? (o.result as { pid: number }).pid : 0))).toEqual([freePid, freePid]);
      expect(isAlive(stuckPid)).toBe(true);
    } finally {
      await h.close();
    }
  });

  test("an attempt's start is reported as its function begins, not while the attempts ahead of it in the same child still run", async () => {
    const h = await harness({ workers: 1 });
    fs.writeFileSync(
      path.join(h.dir, 'busy.js'),
      'module.exports = function (ms) { const until = Date.now() + ms; while (Date.now() < until); return "busy"; };',
    );
    const events: string[] = [];
    const onStarted = (key: string) => events.push(`started ${key}`);
    const onSettled = (key: string) => events.push(`settled ${key}`);
    h.pool.on('started', onStarted).on('settled', onSettled);
    try {
      // Both resolved first, then handed to the child in one tick: B waits behind A on its one thread.
      const [busy, startedAt] = await Promise.all([h.loader.resolve('busy'), h.loader.resolve('started-at')]);
      const a = {
        key: 'busy#1',
        task: { id: 'busy', attempt: 1, module: 'busy', params: [300], priority: 0 },
      };
      const b = {
        key: 'sa#1',
        task: { id: 'sa', attempt: 1, module: 'started-at', params: [], priority: 0 },
      };
      const settled = waitForEvent(h.pool, 'settled', (key: string) => key === b.key, { what: 'B settled' });
      h.pool.run({ ...a, module: busy });
      h.pool.run({ ...b, module: startedAt });
      await settled;
      // A was seen running before it ended; B was announced only after A was over, as it began.
      expect(events).toEqual([
        `started ${a.key}`,
        `settled ${a.key}`,
        `started ${b.key}`,
        `settled ${b.key}`,
      ]);
    } finally {
      h.pool.off('started', onStarted).off('settled', onSettled);
      await h.close();
    }
  });

  test('a child spinning on the CPU dies when its runner is killed with SIGKILL', async () => {
    const script = `
      const { ChildPool } = require(${JSON.stringify(path.join(ROOT, 'runner', 'pool.ts'))});
      const { ModuleLoader } = require(${JSON.stringify(path.join(ROOT, 'runner', 'loader.ts'))});
      const { silentLogger } = require(${JSON.stringify(path.join(ROOT, 'common', 'logger.ts'))});
      (async () => {
        const logger = silentLogger();
        const loader = new ModuleLoader({ dirs: [${JSON.stringify(FIXTURES)}], watch: false, logger });
        await loader.start();
        const pool = new ChildPool({ workers: 1, killGraceMs: 1000, execArgv: [], orphanWatchdog: true, logger });
        await pool.start();
        pool.on('started', () => process.stdout.write(pool.pids()[0] + '\\n'));
        pool.run({ key: 'spin#1', task: { id: 'spin', attempt: 1, module: 'cpu-loop', params: [], priority: 0 }, module: await loader.resolve('cpu-loop') });
      })();`;
    const runner = spawn(
      process.execPath,
      ['--require', require.resolve('tsx/cjs', { paths: [ROOT] }), '-e', script],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    const childPid = await within(
      WAIT_MS,
      new Promise<number>((resolve) =>
        readline.createInterface({ input: runner.stdout! }).once('line', (l) => resolve(Number(l))),
      ),
      'the pid of the spinning child from the runner process',
    );
    expect(isAlive(childPid)).toBe(true);
    runner.kill('SIGKILL');
    // Nothing signals the death of a process that is not ours: poll, bounded.
    const until = Date.now() + 10_000;
    while (isAlive(childPid) && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
    expect(isAlive(childPid)).toBe(false);
  });
});

describe('runner child pool: recycling', () => {
  const pidOf = (o: JobOutcome) => (o.ok ? (o.result as { pid: number }).pid : 0);

  test('maxTasksPerWorker 3: seven tasks in a row run in three processes, 3 + 3 + 1', async () => {
    const h = await harness({ workers: 1, maxTasksPerWorker: 3 });
    try {
      const recycled: number[] = [];
      h.pool.on('recycle', (old) => recycled.push(old!));
      const pids: number[] = [];
      for (let i = 0; i < 7; i++) {
        const o = await h.exec('timed', [0, i]);
        expect(o).toMatchObject({ ok: true, result: { label: i } });
        pids.push(pidOf(o));
      }
      const [a, b, c] = [pids[0], pids[3], pids[6]];
      expect(pids).toEqual([a, a, a, b, b, b, c]);
      expect(new Set([a, b, c]).size).toBe(3);
      expect(recycled).toEqual([a, b]);
      // A retired child is stopped once it holds nothing; the pool keeps its one worker.
      expect(await exited(a)).toBe(true);
      expect(h.pool.pids()).toEqual([c]);
    } finally {
      await h.close();
    }
  });

  test('a retiring child finishes the attempts it holds; new ones go to its replacement', async () => {
    const h = await harness({ workers: 1, maxTasksPerWorker: 1 });
    try {
      const [first] = h.pool.pids();
      const short = h.run('timed', [10, 'short']);
      const long = h.run('timed', [300, 'long']);
      const recycled = once<[number, number]>(h.pool, 'recycle');
      expect(await short.outcome).toMatchObject({ ok: true, result: { pid: first } });
      const [, fresh] = await recycled;
      // The old child is retiring but still running the long attempt.
      expect(isAlive(first)).toBe(true);
      expect(await h.exec('timed', [0])).toMatchObject({ ok: true, result: { pid: fresh } });
      expect(await long.outcome).toMatchObject({ ok: true, result: { label: 'long', pid: first } });
    } finally {
      await h.close();
    }
  });

  test('maxWorkerMemoryMb: after a task leaves its child above the limit, the next task runs in a new process', async () => {
    // The limit sits 40 MB above what an idle child uses here, and the fixture keeps 80 MB.
    const probe = await harness({ workers: 1 });
    const baseline = await probe.exec('hold-memory', [0]);
    await probe.close();
    const baseMb = (baseline as { result: { rss: number } }).result.rss / (1024 * 1024);
    const limit = Math.ceil(baseMb) + 40;

    const h = await harness({ workers: 1, maxWorkerMemoryMb: limit });
    try {
      const [pid] = h.pool.pids();
      expect(await h.exec('timed', [0])).toMatchObject({ ok: true, result: { pid } });
      const recycled = once<[number, number, string]>(h.pool, 'recycle');
      const held = await h.exec('hold-memory', [80]);
      expect(held).toMatchObject({ ok: true, result: { pid } });
      expect((held as { result: { rss: number } }).result.rss).toBeGreaterThan(limit * 1024 * 1024);
      const [old, fresh, reason] = await recycled;
      expect(old).toBe(pid);
      expect(reason).toContain(`over ${limit} MB`);
      expect(await h.exec('timed', [0])).toMatchObject({ ok: true, result: { pid: fresh } });
      expect(fresh).not.toBe(pid);
    } finally {
      await h.close();
    }
  });
});

describe('runner child pool: memory', () => {
  /** Runs `versions` edits of one module, each run in the same child; returns heapUsed after GC at two points. */
  async function reloadHeap(
    h: Harness,
    body: (v: number) => string,
    versions: number,
    warmup: number,
  ): Promise<[number, number]> {
    const file = path.join(h.dir, 'mem.js');
    const padding = 'x'.repeat(200_000);
    let atWarmup = 0;
    let last = 0;
    for (let v = 1; v <= versions; v++) {
      fs.writeFileSync(
        file,
        `const PAD = "${padding}${v}";\n${body(v)}\nmodule.exports = function () { globalThis.gc(); globalThis.gc(); return { v: ${v}, pad: PAD.length, heap: process.memoryUsage().heapUsed }; };\n`,
      );
      const o = await h.exec('mem');
      if (!o.ok) throw new Error(`version ${v} failed: ${o.error.message}`);
      const r = o.result as { v: number; heap: number };
      expect(r.v).toBe(v);
      if (v === warmup) atWarmup = r.heap;
      last = r.heap;
    }
    return [atWarmup, last];
  }

  test('200 reloads of a module do not grow the child heap (a deliberate leak of the same size would)', async () => {
    const h = await harness({ workers: 1, execArgv: ['--expose-gc'] });
    try {
      const [warm, end] = await reloadHeap(h, () => '', 200, 20);
      const growthMb = (end - warm) / 1e6;
      // 180 retained versions of a 200 kB module would be 36 MB or more.
      expect(growthMb).toBeLessThan(8);

      // The control: the same measurement sees a leak that keeps each version alive.
      const [lw, le] = await reloadHeap(h, () => '(globalThis.__kept ??= []).push(PAD);', 60, 20);
      expect((le - lw) / 1e6).toBeGreaterThan(6);
    } finally {
      await h.close();
    }
  });
});

/** Whether `pid` ends within 5 s (its exit is not ours to await: poll, bounded). */
async function exited(pid: number): Promise<boolean> {
  const until = Date.now() + 5000;
  while (isAlive(pid) && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
  return !isAlive(pid);
}

/** Running (a zombie is not: it has exited and only waits to be reaped). */
function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    return fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.[0] !== 'Z';
  } catch {
    return process.platform !== 'linux';
  }
}

import fs from 'node:fs';
import path from 'node:path';
import { checkExec, EEXEC } from '../../runner/exec-task';
import { ChildPool, type JobOutcome } from '../../runner/pool';
import { tempDir, testLogger } from '../helpers/cluster';
import { testDbName } from '../helpers/db';
import { startRunner } from '../helpers/clients';
import { useCluster } from '../helpers/use-cluster';

jest.setTimeout(30_000);

const NODE = process.execPath;

describe('built-in exec task: allow-list and params', () => {
  test('a program is allowed only as the allow-list spells it', () => {
    // Resolved once, on the runner's PATH, to the file that runs.
    expect(checkExec(['node'], ['node'])).toMatchObject({
      ok: true,
      spec: { program: expect.stringMatching(/^\/.*\/node$/), args: [] },
    });
    expect(checkExec(['/usr/bin/node'], ['node'])).toEqual({
      ok: false,
      error: { code: EEXEC, message: expect.stringContaining('"/usr/bin/node" is not allowed') },
    });
    expect(checkExec(['node'], [])).toMatchObject({
      ok: false,
      error: { code: EEXEC, message: expect.stringContaining('--allow-exec') },
    });
  });

  test('shell: true also needs sh on the allow-list', () => {
    expect(checkExec(['node', [], { shell: true }], ['node'])).toMatchObject({
      ok: false,
      error: { code: EEXEC, message: expect.stringContaining('"sh"') },
    });
    expect(checkExec(['node', [], { shell: true }], ['node', 'sh'])).toMatchObject({
      ok: true,
      spec: { shell: true },
    });
  });

  test('malformed params are named by their position', () => {
    expect(checkExec(['node', 'not-a-list', { maxOutput: -1, other: 1 }], ['node'])).toMatchObject({
      ok: false,
      error: {
        code: 'EVALIDATION',
        message: expect.stringMatching(/params\[1\]: .*params\[2\]\.maxOutput: .*params\[2\]: /),
      },
    });
  });
});

describe('built-in exec task in the pool', () => {
  let pool: ChildPool;
  let seq = 0;
  beforeAll(async () => {
    pool = new ChildPool({
      workers: 1,
      killGraceMs: 300,
      execArgv: [],
      orphanWatchdog: false,
      logger: testLogger(),
    });
    await pool.start();
  });
  afterAll(() => pool.close());

  function exec(params: unknown[], runTimeout?: number): Promise<JobOutcome> {
    const checked = checkExec(params, [NODE]);
    if (!checked.ok) throw new Error(checked.error.message);
    const id = `x${++seq}`;
    const key = `${id}#1`;
    return new Promise((resolve) => {
      const on = (k: string, o: JobOutcome) => {
        if (k !== key) return;
        pool.off('settled', on);
        resolve(o);
      };
      pool.on('settled', on);
      pool.run({
        key,
        task: { id, attempt: 1, module: 'exec', params, priority: 0 },
        exec: checked.spec,
        runTimeout,
      });
    });
  }

  test('a non-zero exit code is a result, with what the program wrote', async () => {
    expect(
      await exec([NODE, ['-e', "process.stdout.write('hi'); process.stderr.write('oops'); process.exit(3)"]]),
    ).toEqual({
      ok: true,
      result: { code: 3, signal: null, stdout: 'hi', stderr: 'oops', truncated: false },
    });
  });

  test('cwd and env reach the program', async () => {
    const dir = fs.realpathSync(tempDir('taskmaster-exec-'));
    try {
      const outcome = await exec([
        NODE,
        ['-e', 'process.stdout.write(process.cwd() + "|" + process.env.TM_X)'],
        { cwd: dir, env: { TM_X: 'y' } },
      ]);
      expect(outcome).toMatchObject({ ok: true, result: { code: 0, stdout: `${dir}|y` } });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('output beyond maxOutput is cut and flagged, per stream', async () => {
    const outcome = await exec([
      NODE,
      ['-e', "process.stdout.write('x'.repeat(100000)); process.stderr.write('short')"],
      { maxOutput: 1000 },
    ]);
    expect(outcome).toEqual({
      ok: true,
      result: { code: 0, signal: null, stdout: 'x'.repeat(1000), stderr: 'short', truncated: true },
    });
  });

  test('an allowed program that does not exist when the runner starts is refused with EEXEC', () => {
    expect(checkExec(['/nonexistent/program'], ['/nonexistent/program'])).toMatchObject({
      ok: false,
      error: { code: EEXEC, message: expect.stringContaining('no such program') },
    });
  });

  test('a program that cannot start fails the attempt', async () => {
    const checked = { spec: { program: '/nonexistent/program', args: [], shell: false, maxOutput: 1000 } };
    const outcome = new Promise<JobOutcome>((resolve) =>
      pool.once('settled', (_k: string, o: JobOutcome) => resolve(o)),
    );
    pool.run({
      key: 'nope#1',
      task: { id: 'nope', attempt: 1, module: 'exec', params: [], priority: 0 },
      exec: checked.spec,
    });
    expect(await outcome).toEqual({
      ok: false,
      error: { code: 'ETASK', message: expect.stringContaining('ENOENT') },
    });
  });

  test('runTimeout: ETO, and the program is gone even if it ignores SIGTERM', async () => {
    const dir = tempDir('taskmaster-exec-');
    const pidFile = path.join(dir, 'pid');
    try {
      const script = `require('fs').writeFileSync(${JSON.stringify(pidFile)}, String(process.pid));
        process.on('SIGTERM', () => {}); setInterval(() => {}, 1000);`;
      const started = Date.now();
      // Long enough for node to start and write its pid on a loaded machine (300 ms was not).
      expect(await exec([NODE, ['-e', script]], 1500)).toEqual({
        ok: false,
        error: { code: 'ETO', message: expect.stringContaining('1500 ms') },
      });
      expect(Date.now() - started).toBeLessThan(3500);
      const pid = Number(fs.readFileSync(pidFile, 'utf8'));
      expect(await gone(pid)).toBe(true);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('built-in exec task: cancel', () => {
  test('a cancelled exec reports nothing and its program is stopped', async () => {
    const pool = new ChildPool({
      workers: 1,
      killGraceMs: 300,
      execArgv: [],
      orphanWatchdog: false,
      logger: testLogger(),
    });
    await pool.start();
    const dir = tempDir('taskmaster-exec-');
    try {
      const pidFile = path.join(dir, 'pid');
      const script = `require('fs').writeFileSync(${JSON.stringify(pidFile)}, String(process.pid));
        setInterval(() => {}, 1000);`;
      const checked = checkExec([NODE, ['-e', script]], [NODE]);
      if (!checked.ok) throw new Error(checked.error.message);
      const settled: string[] = [];
      pool.on('settled', (k) => settled.push(k));
      pool.run({
        key: 'c#1',
        task: { id: 'c', attempt: 1, module: 'exec', params: [], priority: 0 },
        exec: checked.spec,
      });
      const until = Date.now() + 5000;
      while (!fs.existsSync(pidFile) && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
      const pid = Number(fs.readFileSync(pidFile, 'utf8'));
      expect(pool.has('c#1')).toBe(true);
      pool.cancel('c#1');
      expect(pool.has('c#1')).toBe(false);
      expect(await gone(pid)).toBe(true);
      expect(settled).toEqual([]);
    } finally {
      await pool.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('built-in exec task: cancel signals the program', () => {
  let pool: ChildPool;
  let dir: string;
  beforeEach(async () => {
    dir = tempDir('taskmaster-exec-');
    // A grace far longer than the waits below: only a SIGTERM can end the program in time.
    pool = new ChildPool({
      workers: 1,
      killGraceMs: 20_000,
      execArgv: [],
      orphanWatchdog: false,
      logger: testLogger(),
    });
    await pool.start();
  });
  afterEach(async () => {
    await pool.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  /** Runs `script` under node as an exec attempt and resolves with its pid once it has written it. */
  async function runScript(key: string, script: string): Promise<number> {
    const pidFile = path.join(dir, `${key}.pid`);
    const checked = checkExec(
      [
        NODE,
        ['-e', `require('fs').writeFileSync(${JSON.stringify(pidFile)}, String(process.pid));${script}`],
      ],
      [NODE],
    );
    if (!checked.ok) throw new Error(checked.error.message);
    pool.run({
      key,
      task: { id: key, attempt: 1, module: 'exec', params: [], priority: 0 },
      exec: checked.spec,
    });
    const until = Date.now() + 10_000;
    while (!(fs.existsSync(pidFile) && fs.readFileSync(pidFile, 'utf8')) && Date.now() < until)
      await new Promise((r) => setTimeout(r, 20));
    return Number(fs.readFileSync(pidFile, 'utf8'));
  }

  test('a cancel sends the program SIGTERM: its handler runs and it exits long before the kill', async () => {
    const marker = path.join(dir, 'terminated');
    const pid = await runScript(
      'term#1',
      `process.on('SIGTERM', () => { require('fs').writeFileSync(${JSON.stringify(marker)}, 'SIGTERM'); process.exit(0); });
       setInterval(() => {}, 1000);`,
    );
    pool.cancel('term#1');
    expect(await gone(pid)).toBe(true);
    expect(fs.readFileSync(marker, 'utf8')).toBe('SIGTERM');
  });

  test('what the program started in the background (a detached child) is killed with it: 0 of 2 processes left', async () => {
    const childFile = path.join(dir, 'child.pid');
    const sleeper = `require('fs').writeFileSync(${JSON.stringify(childFile)}, String(process.pid)); setInterval(() => {}, 1000);`;
    const pid = await runScript(
      'bg#1',
      `require('child_process').spawn(process.execPath, ['-e', ${JSON.stringify(sleeper)}], { stdio: 'ignore', detached: true }).unref();
       setInterval(() => {}, 1000);`,
    );
    const until = Date.now() + 10_000;
    while (!(fs.existsSync(childFile) && fs.readFileSync(childFile, 'utf8')) && Date.now() < until)
      await new Promise((r) => setTimeout(r, 20));
    const child = Number(fs.readFileSync(childFile, 'utf8'));
    expect(alive(child)).toBe(true);
    pool.cancel('bg#1');
    try {
      expect(await gone(pid)).toBe(true);
      expect(await gone(child)).toBe(true);
    } finally {
      if (alive(child)) process.kill(child, 'SIGKILL');
    }
  });
});

describe('built-in exec task through a master', () => {
  const dir = tempDir('taskmaster-exec-tasks-');
  beforeAll(() => {
    // A module named exec must not replace the built-in.
    fs.writeFileSync(path.join(dir, 'exec.js'), 'module.exports = () => "the folder module";');
  });
  const c = useCluster({
    dbName: testDbName('exec'),
    runners: [{ tasks: [dir], allowExec: [NODE] }],
    feeder: true,
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('an allowed program runs; the built-in wins over a task folder module named exec', async () => {
    const [outcome] = await c.feeder.work([
      { module: 'exec', params: [NODE, ['-e', "process.stdout.write('hi'); process.exit(3)"]] },
    ]);
    expect(outcome).toMatchObject({
      state: 'done',
      result: { code: 3, signal: null, stdout: 'hi', stderr: '', truncated: false },
    });
  });

  test('only a runner that allows programs announces exec, so exec tasks never go to one that does not', async () => {
    // Its folder holds a module named exec, which it never loads: it must not announce it either.
    const plain = await startRunner(c.url, { runnerId: 'no-exec', tasks: [dir], slots: 4 });
    try {
      const modules = (id: string) =>
        (c.master.listRunners().find((r) => r.id === id)?.modules ?? []) as { name: string; hash: string }[];
      expect(modules(c.runner.runnerId)).toContainEqual({ name: 'exec', hash: 'built-in' });
      expect(modules('no-exec').map((m) => m.name)).not.toContain('exec');
      const outcomes = await c.feeder.work(
        Array.from({ length: 6 }, (_, i) => ({
          module: 'exec',
          params: [NODE, ['-e', `process.exit(${i})`]],
        })),
      );
      expect(outcomes.map((o) => [o.state, (o.result as { code: number }).code])).toEqual(
        Array.from({ length: 6 }, (_, i) => ['done', i]),
      );
    } finally {
      await plain.close();
    }
  });

  test('a program not on the allow-list fails with EEXEC and is not retried', async () => {
    const [outcome] = await c.feeder.work([{ module: 'exec', params: ['echo', ['x']], maxAttempts: 3 }]);
    expect(outcome).toMatchObject({
      state: 'failed',
      attempts: 1,
      error: { code: 'EEXEC', message: expect.stringContaining('"echo" is not allowed') },
    });
  });
});

/** Whether `pid` ends within 5 s (the pool, not the test, sees its exit: poll, bounded). */
async function gone(pid: number): Promise<boolean> {
  const until = Date.now() + 5000;
  while (alive(pid) && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
  return !alive(pid);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

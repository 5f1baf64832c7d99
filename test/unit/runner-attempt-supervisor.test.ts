/**
 * The attempt supervisor on its own, with real hosts: a forked pool child (ChildHandle) running the
 * fixture tasks, and a real program for `exec`. The test routes the host's messages to the
 * supervisor as the pool does; what is checked is the supervisor's contract: the run timeout reports
 * ETO, then asks the attempt to stop, then kills its host after the grace; and an attempt is reported
 * exactly once, whatever comes after.
 */
import { ModuleLoader } from '../../runner/loader';
import { AttemptSupervisor, type AttemptOwner, type JobOutcome } from '../../runner/attempt-supervisor';
import { ChildHandle, type ChildExit } from '../../runner/child-handle';
import { ExecProcess } from '../../runner/exec-task';
import { ParentCommand, type ToParent } from '../../runner/sandbox-messages';
import { wireError } from '../../protocol/errors';
import path from 'node:path';
import { capturingLogger } from '../helpers/capture';

const FIXTURES = path.resolve(__dirname, '..', 'fixtures', 'tasks');

jest.setTimeout(30_000);

const GRACE_MS = 300;

interface Harness {
  reports: [string, JobOutcome][];
  lines: Record<string, unknown>[];
  loader: ModuleLoader;
  owner: AttemptOwner;
}

async function harness(): Promise<Harness> {
  const { logger, lines } = capturingLogger();
  const loader = new ModuleLoader({ dirs: [FIXTURES], watch: false, stableMs: 0, logger });
  await loader.start();
  const reports: [string, JobOutcome][] = [];
  const owner: AttemptOwner = {
    killGraceMs: GRACE_MS,
    log: logger,
    report: (key, outcome) => reports.push([key, outcome]),
  };
  return { reports, lines, loader, owner };
}

/** A forked child, ready. */
async function child(h: Harness): Promise<ChildHandle> {
  const c = new ChildHandle({ execArgv: [], orphanWatchdog: false, logger: h.owner.log });
  await within(new Promise<void>((r) => c.once('ready', r)), 10_000, 'the child did not report ready');
  return c;
}

let seq = 0;

/**
 * Starts `module` on `c` under a supervisor, routing the child's outcome and death to it as the pool
 * does. `result` resolves with the child's own Completed/Failed for the attempt (even if ignored).
 */
async function start(h: Harness, c: ChildHandle, module: string, params: unknown[], runTimeout?: number) {
  const id = `a${++seq}`;
  const key = `${id}#1`;
  const task = { id, attempt: 1, module, params, priority: 0 };
  const mod = await h.loader.resolve(module);
  const attempt = new AttemptSupervisor({ key, task, module: mod, runTimeout }, h.owner);
  const result = new Promise<ToParent>((resolve) => {
    const onMessage = (msg: ToParent) => {
      if ((msg.cmd !== ParentCommand.Completed && msg.cmd !== ParentCommand.Failed) || msg.key !== key)
        return;
      c.off('message', onMessage);
      attempt.finish(
        msg.cmd === ParentCommand.Completed
          ? { ok: true, result: msg.result }
          : { ok: false, error: msg.error },
      );
      resolve(msg);
    };
    c.on('message', onMessage);
  });
  const exit = new Promise<ChildExit>((resolve) =>
    c.once('exit', (e) => {
      if (e.keys.includes(key)) attempt.finish({ ok: false, error: wireError('ECRASH', 'died') });
      resolve(e);
    }),
  );
  attempt.started(c);
  c.start(key, task, mod);
  return { key, attempt, result, exit };
}

function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(what)), ms))),
  ]);
}

/** Resolves once `n` reports were made (bounded). */
async function reported(h: Harness, n: number, what: string): Promise<void> {
  const until = Date.now() + 10_000;
  while (h.reports.length < n) {
    if (Date.now() > until) throw new Error(`no report: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('attempt supervisor', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await harness();
  });
  beforeEach(() => {
    h.reports.length = 0;
    h.lines.length = 0;
  });
  afterAll(() => h.loader.close());

  test('timeout → cancel → kill: a spinning task gets ETO at its timeout, its abort signal, and its child is killed after the grace', async () => {
    const c = await child(h);
    const began = Date.now();
    const { key, exit, attempt } = await start(h, c, 'cpu-loop', [], 100);
    await reported(h, 1, 'ETO');
    const reportedAt = Date.now();
    // Settled by the timeout: a cancel now changes nothing (the kill still comes for the ETO, on time).
    attempt.cancel(wireError('ECANCELLED', 'late'));
    expect(h.reports).toEqual([
      [key, { ok: false, error: { code: 'ETO', message: expect.stringContaining('100 ms') } }],
    ]);
    expect(reportedAt - began).toBeGreaterThanOrEqual(100);
    // The cancel went to the child: it counts the attempt as abandoned until it lets go.
    expect(c.abandoned).toBe(1);
    const e = await within(exit, 5000, 'the child was not killed after the grace');
    expect(Date.now() - reportedAt).toBeGreaterThanOrEqual(GRACE_MS - 20);
    expect(e.signal).toBe('SIGKILL');
    expect(c.killedFor).toBe(`task ${key.split('#')[0]} (attempt 1) did not stop after ETO`);
    // The death with the attempt in hand is not reported a second time.
    expect(h.reports).toHaveLength(1);
    expect(h.lines).toContainEqual(
      expect.objectContaining({
        level: 'warn',
        message: 'task did not stop after its abort signal; killing its worker process',
      }),
    );
  });

  test('a task honouring its signal: ETO once, its own failure after the cancel is ignored, its child is not killed', async () => {
    const c = await child(h);
    try {
      const { result } = await start(h, c, 'slow', [30_000], 100);
      const own = await within(result, 5000, 'the task did not stop on its abort signal');
      expect(own).toMatchObject({ cmd: ParentCommand.Failed, error: { code: 'ETO' } });
      expect(h.reports).toHaveLength(1);
      expect(h.reports[0][1]).toMatchObject({ ok: false, error: { code: 'ETO' } });
      expect(c.abandoned).toBe(0);
      // The escalation was called off: past the grace, the child still runs and takes work.
      await new Promise((r) => setTimeout(r, GRACE_MS * 2));
      expect(c.alive).toBe(true);
      const next = await start(h, c, 'ok', ['after']);
      await within(next.result, 5000, 'the child took no new attempt');
      expect(h.reports[1][1]).toEqual({ ok: true, result: ['after'] });
    } finally {
      await c.stop(1000);
    }
  });

  test('a result after a timeout is ignored', async () => {
    const c = await child(h);
    try {
      // `timed` does not listen to its signal: it completes at 200 ms, after the 50 ms timeout and
      // before the kill at 50 + 300 ms.
      const { result } = await start(h, c, 'timed', [200], 50);
      const own = await within(result, 5000, 'the late result did not come');
      expect(own).toMatchObject({ cmd: ParentCommand.Completed });
      expect(h.reports).toHaveLength(1);
      expect(h.reports[0][1]).toMatchObject({ ok: false, error: { code: 'ETO' } });
    } finally {
      await c.stop(1000);
    }
  });

  test('a cancel after the attempt settled is a no-op; a cancel before it stops the attempt without a report', async () => {
    const c = await child(h);
    try {
      const done = await start(h, c, 'ok', [1]);
      await within(done.result, 5000, 'the attempt did not complete');
      done.attempt.cancel(wireError('ECANCELLED', 'late'));
      expect(h.reports).toEqual([[done.key, { ok: true, result: [1] }]]);
      expect(done.attempt.live).toBe(false);
      expect(c.abandoned).toBe(0);

      const slow = await start(h, c, 'slow', [30_000]);
      slow.attempt.cancel(wireError('ECANCELLED', 'by the master'));
      expect(slow.attempt.live).toBe(false);
      expect(c.abandoned).toBe(1);
      const own = await within(slow.result, 5000, 'the task did not stop on its abort signal');
      expect(own).toMatchObject({ cmd: ParentCommand.Failed, error: { code: 'ECANCELLED' } });
      expect(h.reports).toHaveLength(1);
      expect(c.abandoned).toBe(0);
    } finally {
      await c.stop(1000);
    }
  });

  test('a program ignoring SIGTERM: ETO, then SIGKILL after the grace; its exit is not reported again', async () => {
    const exited = new Promise<JobOutcome>((resolve) => {
      const attempt = new AttemptSupervisor(
        {
          key: 'p#1',
          task: { id: 'p', attempt: 1, module: 'exec', params: [], priority: 0 },
          exec: { program: '/bin/sh', args: [], shell: false, maxOutput: 1000 },
          runTimeout: 100,
        },
        h.owner,
      );
      // The shell itself spins, so nothing outlives it holding the pipes.
      const proc = new ExecProcess(
        {
          program: '/bin/sh',
          args: ['-c', 'trap "" TERM; while :; do :; done'],
          shell: false,
          maxOutput: 1000,
        },
        (outcome) => {
          attempt.finish(outcome);
          resolve(outcome);
        },
      );
      attempt.started(proc);
    });
    const own = await within(exited, 5000, 'the program was not killed');
    expect(own).toMatchObject({ ok: true, result: { signal: 'SIGKILL' } });
    expect(h.reports).toEqual([['p#1', { ok: false, error: expect.objectContaining({ code: 'ETO' }) }]]);
    expect(h.lines).toContainEqual(
      expect.objectContaining({ level: 'warn', message: 'program did not stop after SIGTERM; killing it' }),
    );
  });
});

/**
 * Delayed tasks (`runAt`, `delay`) on a real master, runners and database: none of 2,000 starts
 * before its time (each records its start inside the task); they are shown as `delayed` (API, `why`,
 * `taskmaster ls --state delayed`, /metrics); a dependent whose time has not come waits for it after
 * its dependency is done; bad times are refused naming the field. Across a master SIGKILL and
 * restart, delayed tasks still start at their time, not at the restart, and so does a retry waiting
 * out its backoff; across a takeover by a standby master too.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { TaskInput, TaskOutcome } from '../../protocol/schemas';
import type { TaskView } from '../../protocol/views';
import type { Runner } from '../../runner/runner';
import { startFeeder, startRunner, type TestFeeder } from '../helpers/clients';
import { freePort, ROOT, spawnCli, tempDir, type Proc } from '../helpers/cluster';
import { testDbName, testDbUrl } from '../helpers/db';
import { useCluster } from '../helpers/use-cluster';
import { waitForEvent, within } from '../helpers/wait';

const MANY = 2_000;
/** How long the waits for many outcomes may take on a busy machine, and the tests that make them. */
const LONG_MS = 120_000;
const LONG_TEST_MS = LONG_MS + 60_000;
jest.setTimeout(LONG_TEST_MS);

/**
 * `n` tasks of `started-at`, their times spread over `spreadMs` from `from` (ISO, epoch ms and delay
 * in turn), and the earliest time each may start: a delay counts from when the master received the
 * add, which is after now.
 */
function delayedTasks(
  prefix: string,
  n: number,
  from: number,
  spreadMs: number,
): { tasks: TaskInput[]; runAt: Map<string, number> } {
  const sentAt = Date.now();
  const runAt = new Map<string, number>();
  const tasks = Array.from({ length: n }, (_, i): TaskInput => {
    const at = from + Math.floor((i * spreadMs) / n);
    const id = `${prefix}-${i}`;
    runAt.set(id, at);
    const base = { id, module: 'started-at', params: [i] };
    if (i % 3 === 0) return { ...base, runAt: new Date(at).toISOString() };
    if (i % 3 === 1) return { ...base, runAt: at };
    return { ...base, delay: at - sentAt };
  });
  return { tasks, runAt };
}

async function getJson<T>(base: string, p: string): Promise<T> {
  const res = await fetch(new URL(p, base));
  expect(res.status).toBe(200);
  return (await res.json()) as T;
}

/** Every task of `batch` the API lists in `state`, following the cursor. */
async function listAll(base: string, batch: string, state: string): Promise<TaskView[]> {
  const out: TaskView[] = [];
  let cursor: string | null = null;
  do {
    const q = new URLSearchParams({ batch, state, limit: '500', ...(cursor ? { cursor } : {}) });
    const page: { tasks: TaskView[]; next: string | null } = await getJson(base, `/api/tasks?${q}`);
    out.push(...page.tasks);
    cursor = page.next;
  } while (cursor);
  return out;
}

/** Tasks that started before their time: `[id, ms early]`. */
function early(outcomes: TaskOutcome[], runAt: Map<string, number>): [string, number][] {
  const out: [string, number][] = [];
  for (const o of outcomes) {
    const started = (o.result as { startedAt: number }).startedAt;
    const at = runAt.get(o.id) as number;
    if (!(started >= at)) out.push([o.id, at - started]);
  }
  return out;
}

describe('delayed tasks on a running master', () => {
  const c = useCluster({
    dbName: testDbName('delayed'),
    runners: [
      { workers: 2, slots: 8 },
      { workers: 2, slots: 8 },
    ],
    feeder: { waitMs: LONG_MS },
  });

  test(`none of ${MANY} delayed tasks starts before its time; each is listed as delayed until then`, async () => {
    const from = Date.now() + 5_000;
    const { tasks, runAt } = delayedTasks('many', MANY, from, 3_000);
    await c.feeder.add(tasks, { batch: 'many' });
    const some = await getJson<{ tasks: TaskView[] }>(c.url, '/api/tasks?batch=many&state=delayed&limit=10');
    expect(Date.now()).toBeLessThan(from); // listed before the first time came
    expect(some.tasks.length).toBe(10);
    for (const v of some.tasks) expect(v.runAt).toBeGreaterThanOrEqual(runAt.get(v.id) as number);
    const outcomes = await within(
      LONG_MS,
      c.feeder.wait(tasks.map((t) => t.id as string)),
      'every delayed task',
    );
    expect(outcomes.filter((o) => o.state !== 'done')).toEqual([]);
    expect(early(outcomes, runAt)).toEqual([]);
  });

  test('a delayed task is shown as delayed: its view, why, /metrics and taskmaster ls --state delayed', async () => {
    const at = Date.now() + 600_000;
    await c.feeder.add([{ id: 'shown', module: 'ok', runAt: at }], { batch: 'shown' });
    const { task } = await getJson<{ task: TaskView & { why: string; whyCode: string } }>(
      c.url,
      '/api/tasks/shown',
    );
    expect(task).toMatchObject({ state: 'delayed', runAt: at, whyCode: 'DELAYED' });
    const why = await getJson<{ code: string; message: string }>(c.url, '/api/tasks/shown/why');
    expect(why.code).toBe('DELAYED');
    expect(why.message).toMatch(new RegExp(`^delayed until ${new Date(at).toISOString()}, \\d+ ms left$`));
    const metrics = await (await fetch(new URL('/metrics', c.url))).text();
    expect(metrics).toMatch(/^taskmaster_tasks_delayed 1$/m);
    expect((await listAll(c.url, 'shown', 'ready')).length).toBe(0);

    const cli = (...args: string[]) =>
      new Promise<string>((resolve, reject) =>
        execFile(
          process.execPath,
          [path.join(ROOT, 'bin', 'taskmaster.js'), ...args],
          { env: { ...process.env, TASKMASTER_MASTER: c.url }, timeout: 60_000 },
          (err, stdout) => (err ? reject(err) : resolve(stdout)),
        ),
      );
    const ls = await cli('ls', '--state', 'delayed', '--batch', 'shown');
    expect(ls).toMatch(new RegExp(`^shown\\s+delayed until ${new Date(at).toISOString()}\\s+ok\\s`, 'm'));
    expect(await cli('ls', '--state', 'waiting', '--batch', 'shown', '--json')).toBe('');

    await c.feeder.cancel(['shown']);
  });

  test('a dependent whose time has not come waits for it after its dependency is done', async () => {
    const at = Date.now() + 2_000;
    await c.feeder.add(
      [
        { id: 'first', module: 'started-at' },
        { id: 'then', module: 'started-at', dependencies: ['first'], runAt: at },
      ],
      { batch: 'chain' },
    );
    const [first] = await c.feeder.wait(['first']);
    const doneAt = Date.now();
    const [then] = await c.feeder.wait(['then']);
    expect(first.state).toBe('done');
    expect(doneAt).toBeLessThan(at); // the dependency was done before the dependent's time
    expect((then.result as { startedAt: number }).startedAt).toBeGreaterThanOrEqual(at);
  });

  test('a bad time is refused naming the field, and nothing of the add is stored', async () => {
    const refused = async (task: Record<string, unknown>) => {
      const err = await c.feeder
        .add([
          { id: 'fine', module: 'ok' },
          { id: 'bad', module: 'ok', ...task },
        ] as TaskInput[])
        .then(
          () => null,
          (e: unknown) => e as { code: string; message: string },
        );
      return err && `${err.code}: ${err.message}`;
    };
    expect(await refused({ runAt: Date.now() + 1000, delay: 5 })).toMatch(
      /^EVALIDATION: [^]*tasks\[1\]\.delay: give runAt or delay, not both/,
    );
    expect(await refused({ runAt: '2026-13-01T00:00:00Z' })).toMatch(
      /tasks\[1\]\.runAt: "2026-13-01T00:00:00Z" is not an ISO 8601 date-time with a zone/,
    );
    expect(await refused({ runAt: '2026-12-01T10:00:00' })).toMatch(/tasks\[1\]\.runAt: .* with a zone/);
    expect(await refused({ runAt: 1_765_000_000 })).toMatch(/tasks\[1\]\.runAt: .*looks like seconds/);
    expect(await refused({ delay: -1 })).toMatch(/tasks\[1\]\.delay: must not be negative/);
    expect((await fetch(new URL('/api/tasks/fine', c.url))).status).toBe(404);
    // A time in the past is no error: the task is ready at once.
    const [o] = await c.feeder.work([{ module: 'ok', params: [7], runAt: '2020-01-01T00:00:00Z' }]);
    expect(o).toMatchObject({ state: 'done', result: [7] });
  });
});

describe('delayed tasks and retries in backoff across a master SIGKILL and restart', () => {
  const dbName = testDbName('delayed-restart');
  let dir: string;
  let url: string;
  let port: number;
  const masters: Proc[] = [];
  let runner: Runner | undefined;
  let feeder: TestFeeder | undefined;

  const startMasterProcess = async () => {
    const p = spawnCli(['master', '--port', String(port), '--mongo-url', testDbUrl(dbName)]);
    masters.push(p);
    await p.waitFor(/master listening/, 60_000);
    return p;
  };
  /** Kills the master and starts another on its database; resolves once the runner is back. */
  const restart = async (m: Proc) => {
    await m.kill('SIGKILL');
    const back = waitForEvent(runner as Runner, 'ready', undefined, {
      timeout: 60_000,
      what: 'the runner back on the restarted master',
    });
    const next = await startMasterProcess();
    await back;
    return next;
  };

  beforeAll(async () => {
    dir = tempDir('delayed-restart');
    port = await freePort();
    url = `http://127.0.0.1:${port}`;
    await startMasterProcess();
    runner = await startRunner(url, {
      workers: 2,
      slots: 8,
      reconnectDelayMs: 200,
      reconnectDelayMaxMs: 200,
    });
    feeder = await startFeeder(url, { waitMs: LONG_MS });
  });
  afterAll(async () => {
    await feeder?.close();
    await runner?.close();
    for (const m of masters) await m.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test(`${MANY} delayed tasks start at their time after the restart, not at the restart`, async () => {
    const f = feeder as TestFeeder;
    const from = Date.now() + 12_000;
    const { tasks, runAt } = delayedTasks('kept', MANY, from, 3_000);
    await f.add(tasks, { batch: 'kept' });
    await restart(masters[masters.length - 1]);
    const restartedAt = Date.now();
    expect(restartedAt).toBeLessThan(from); // back before the first time came
    const outcomes = await within(LONG_MS, f.wait(tasks.map((t) => t.id as string)), 'every delayed task');
    expect(outcomes.filter((o) => o.state !== 'done')).toEqual([]);
    expect(early(outcomes, runAt)).toEqual([]);
  });

  test('a retry waiting out its backoff keeps its time across the restart', async () => {
    const f = feeder as TestFeeder;
    const r = runner as Runner;
    const backoffMs = 10_000;
    const marker = path.join(dir, 'first-run');
    const firstDelivered = waitForEvent<[{ id: string }[]]>(
      r,
      'delivered',
      (results) => results.some((x) => x.id === 'backoff'),
      { what: 'the first attempt acknowledged' },
    );
    await f.add([
      {
        id: 'backoff',
        module: 'fail-once',
        params: [marker],
        maxAttempts: 2,
        backoff: { type: 'fixed', delay: backoffMs, jitter: false },
      },
    ]);
    await firstDelivered; // the failure, and the retry's time with it, is durable
    const why = await getJson<{ code: string }>(url, '/api/tasks/backoff/why');
    expect(why.code).toBe('BACKOFF');
    await restart(masters[masters.length - 1]);
    const first = Number(fs.readFileSync(marker, 'utf8'));
    expect(Date.now() - first).toBeLessThan(backoffMs); // back well before the retry's time
    const [o] = await f.wait(['backoff']);
    expect(o.state).toBe('done');
    expect((o.result as { startedAt: number }).startedAt - first).toBeGreaterThanOrEqual(backoffMs);
  });
});

describe('delayed tasks across a takeover by a standby master', () => {
  const procs: Proc[] = [];
  let runner: Runner | undefined;
  let feeder: TestFeeder | undefined;
  afterAll(async () => {
    await feeder?.close();
    await runner?.close();
    for (const p of procs) await p.kill('SIGKILL');
  });

  test('the standby that takes over starts them at their time', async () => {
    const dbName = testDbName('delayed-takeover');
    const [portA, portB] = [await freePort(), await freePort()];
    const urls = [`http://127.0.0.1:${portA}`, `http://127.0.0.1:${portB}`];
    const spawn = (port: number) => {
      const p = spawnCli([
        'master',
        '--port',
        String(port),
        '--mongo-url',
        testDbUrl(dbName),
        '--lease-ms',
        '3000',
      ]);
      procs.push(p);
      return p;
    };
    const a = spawn(portA);
    await a.waitFor(/master listening/, 60_000);
    const b = spawn(portB);
    await b.waitFor(/standing by/, 60_000);
    runner = await startRunner(urls, { workers: 2, slots: 8 });
    feeder = await startFeeder(urls, { waitMs: LONG_MS });
    const from = Date.now() + 12_000;
    const { tasks, runAt } = delayedTasks('taken', 500, from, 2_000);
    await feeder.add(tasks, { batch: 'taken' });
    await a.kill('SIGKILL');
    await b.waitFor(/took over from a master that is gone/, 30_000);
    await b.waitFor(/master listening/, 30_000);
    expect(Date.now()).toBeLessThan(from); // taken over before the first time came
    const outcomes = await within(
      LONG_MS,
      feeder.wait(tasks.map((t) => t.id as string)),
      'every delayed task',
    );
    expect(outcomes.filter((o) => o.state !== 'done')).toEqual([]);
    expect(early(outcomes, runAt)).toEqual([]);
  });
});

/**
 * Finished work is never run again because the master crashed: the master (a real process) is killed
 * with SIGKILL while 16 attempts run on a runner and 16 finished results wait there for their
 * acknowledgement; after the restart every task has run exactly once — whether the runner reconnects
 * within the recovery grace (it keeps its attempts) or after it (it takes them back, nobody else
 * having been given them).
 */
import fs from 'node:fs';
import path from 'node:path';
import type { AttemptRef } from '../../protocol/events';
import type { AttemptResult, TaskOutcome } from '../../protocol/schemas';
import type { Runner } from '../../runner/runner';
import { startFeeder, startRunner, type TestFeeder } from '../helpers/clients';
import { freePort, spawnCli, tempDir, type Proc } from '../helpers/cluster';
import { testDbName, testDbUrl } from '../helpers/db';
import { waitForEvent, within, WAIT_MS } from '../helpers/wait';

const RUNNING = 16;
const FINISHED = 16;

describe.each([
  [
    'within the recovery grace',
    {
      grace: 10_000,
      reconnectDelayMs: 250,
      expectLog: /every runner holding recovered attempts has reported/,
    },
  ],
  [
    'after the recovery grace',
    // Socket.IO spreads the delay by half either way: the runner is back 5 to 15 s after the kill.
    { grace: 300, reconnectDelayMs: 10_000, expectLog: /recovered attempts requeued/ },
  ],
])('the master SIGKILLed with attempts running and results unacknowledged; the runner back %s', (name, o) => {
  const dbName = testDbName(`crash-rerun-${o.grace}`);
  let dir: string;
  let url: string;
  let port: number;
  const masters: Proc[] = [];
  let runner: Runner | undefined;
  let feeder: TestFeeder | undefined;

  const startMasterProcess = async () => {
    const args = ['master', '--port', String(port), '--mongo-url', testDbUrl(dbName)];
    const p = spawnCli([...args, '--recovery-grace', String(o.grace)]);
    masters.push(p);
    await p.waitFor(/master listening/);
    return p;
  };

  beforeAll(async () => {
    dir = tempDir('crash-rerun');
    port = await freePort();
    url = `http://127.0.0.1:${port}`;
  });
  afterAll(async () => {
    await feeder?.close();
    await runner?.close();
    for (const m of masters) await m.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test(`no task runs twice (${name})`, async () => {
    const first = await startMasterProcess();
    const runs = path.join(dir, 'runs');
    const finishGate = path.join(dir, 'finish');
    const heldGate = path.join(dir, 'held');
    runner = await startRunner(url, {
      workers: FINISHED,
      slots: RUNNING + FINISHED,
      reconnectDelayMs: o.reconnectDelayMs,
      reconnectDelayMaxMs: o.reconnectDelayMs,
    });
    const r = runner;
    feeder = await startFeeder(url);
    // The first 16 (higher priority) take the 16 children; the other 16 wait for a child.
    const quick = Array.from({ length: FINISHED }, (_, i) => ({
      id: `quick-${i}`,
      module: 'gate',
      params: [runs, `quick-${i}`, finishGate],
      priority: 1,
    }));
    const held = Array.from({ length: RUNNING }, (_, i) => ({
      id: `held-${i}`,
      module: 'gate',
      params: [runs, `held-${i}`, heldGate],
    }));
    const started: AttemptRef[] = [];
    const firstStarted = new Promise<void>((resolve) =>
      r.on('started', (ref) => void (started.push(ref), started.length === FINISHED && resolve())),
    );
    await feeder.add([...quick, ...held]);
    await within(WAIT_MS, firstStarted, () => `${FINISHED} attempts started (got ${started.length})`);

    // The master stops answering; the first 16 finish (their results go unacknowledged) and the
    // other 16 start; then the master dies.
    const finished: AttemptResult[] = [];
    const acknowledged: AttemptResult[] = [];
    r.on('delivered', (results) => acknowledged.push(...results));
    const heldBack = new Promise<void>((resolve) => {
      const check = () => finished.length === FINISHED && started.length === FINISHED + RUNNING && resolve();
      r.on('result', (res) => void (finished.push(res), check()));
      r.on('started', check);
    });
    first.child.kill('SIGSTOP');
    fs.writeFileSync(finishGate, '');
    await within(WAIT_MS, heldBack, () => `${FINISHED} results and ${RUNNING} more attempts started`);
    expect(finished.every((res) => res.ok && res.id.startsWith('quick-'))).toBe(true);
    expect(r.running.map((a) => a.id).sort()).toEqual(held.map((t) => t.id).sort());
    expect(acknowledged).toEqual([]);
    await first.kill('SIGKILL');

    const back = waitForEvent<[AttemptRef[]]>(r, 'ready', undefined, {
      timeout: 60_000,
      what: 'the runner back on the restarted master',
    });
    const second = await startMasterProcess();
    const [drop] = await back;
    expect(drop).toEqual([]);
    fs.writeFileSync(heldGate, '');

    const outcomes = await within(
      WAIT_MS,
      feeder.wait([...quick, ...held].map((t) => t.id)),
      'every outcome',
    );
    expect(outcomes.map((x: TaskOutcome) => x.state)).toEqual(Array(FINISHED + RUNNING).fill('done'));
    const lines = fs.readFileSync(runs, 'utf8').trim().split('\n');
    const twice = lines.filter((l, i) => lines.indexOf(l) !== i);
    expect({ runs: lines.length, twice }).toEqual({ runs: FINISHED + RUNNING, twice: [] });
    expect(second.output()).toMatch(o.expectLog);
    expect(second.output()).not.toMatch(/"level":"error"/);
  });
});

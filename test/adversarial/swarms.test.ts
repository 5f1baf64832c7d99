/**
 * Swarms and storms: runners that say hello and never report, runners that come and go, WebSockets
 * that never authenticate — against a master running as its own process, whose descriptors and memory
 * are counted — and the master's own run timeout, which takes back what a silent runner holds.
 */
import fs from 'node:fs';
import type { TaskOutcome } from '../../protocol/schemas';
import { rawFeeder, rawRunner, type RawRunner } from '../helpers/raw-clients';
import { spawnMaster, type MasterProcess } from '../helpers/cluster';
import { testDbName } from '../helpers/db';
import { eventually, within, WAIT_MS } from '../helpers/wait';
import { assertMasterAlive, httpRequest, useAttackedCluster, TOKEN } from './cluster';
import { WireClient } from './wire';

describe('adversarial: the master takes back what a silent runner holds', () => {
  const raws: RawRunner[] = [];
  const c = useAttackedCluster({ token: TOKEN, runTimeoutGraceMs: 300 });
  afterEach(() => {
    for (const r of raws.splice(0)) r.close();
  });

  test('an attempt with no result past its run timeout plus the grace fails with ETO like a runner-reported one: retried, its runner told to cancel, its late result stale', async () => {
    const silent = await rawRunner(c.master.url, { runnerId: 'silent-1', slots: 1 }, { token: TOKEN });
    raws.push(silent);
    const f = await rawFeeder(c.master.url, { token: TOKEN });
    try {
      const began = Date.now();
      expect(
        await f.add([{ id: 'mute-1', module: 'ok', runTimeout: 200, maxAttempts: 2, runner: 'silent-1' }]),
      ).toMatchObject({ ok: true });
      // Attempt 1 is never reported: the master takes it back and cancels it on the runner…
      await silent.until(() => silent.cancelled.some((x) => x.id === 'mute-1' && x.attempt === 1));
      expect(Date.now() - began).toBeGreaterThanOrEqual(200 + 300);
      // …and retries it, as after the runner's own ETO.
      await silent.until(() => silent.assigned.some((x) => x.id === 'mute-1' && x.attempt === 2));
      expect(await silent.finish([{ id: 'mute-1', attempt: 1, ok: true, result: 'late' }])).toMatchObject({
        accepted: 0,
        stale: 1,
      });
      expect(await silent.finish([{ id: 'mute-1', attempt: 2, ok: true, result: 'second' }])).toMatchObject({
        accepted: 1,
      });
      await f.until(() => f.outcomes.has('mute-1'));
      expect(f.outcomes.get('mute-1')).toMatchObject({ state: 'done', result: 'second', attempts: 2 });
    } finally {
      f.close();
    }
    await c.assertAlive();
  });

  test('with no attempt left, the task fails with ETO naming the runner and that the master took it back', async () => {
    const silent = await rawRunner(c.master.url, { runnerId: 'silent-2', slots: 1 }, { token: TOKEN });
    raws.push(silent);
    const f = await rawFeeder(c.master.url, { token: TOKEN });
    try {
      await f.add([{ id: 'mute-2', module: 'ok', runTimeout: 200, maxAttempts: 1, runner: 'silent-2' }]);
      await f.until(() => f.outcomes.has('mute-2'));
      const o = f.outcomes.get('mute-2') as TaskOutcome;
      expect(o).toMatchObject({ state: 'failed', error: { code: 'ETO' } });
      expect(o.error?.message).toMatch(
        /no result within 200 ms \(and 300 ms of grace\) from runner silent-2/,
      );
      expect(c.master.scheduler.runners.get('silent-2')?.active.size).toBe(0);
    } finally {
      f.close();
    }
    await c.assertAlive();
  });
});

describe('adversarial: swarms and storms (master as a process)', () => {
  let master: MasterProcess;
  let baseline: number;
  const fds = () => fs.readdirSync(`/proc/${master.child.pid}/fd`).length;
  const addresses = Array.from({ length: 10 }, (_, i) => `127.0.2.${i + 2}`);
  const open: WireClient[] = [];

  beforeAll(async () => {
    master = await spawnMaster(testDbName(__filename), [
      '--token',
      TOKEN,
      '--max-connections',
      '1500',
      '--reserved-connections',
      '100',
      '--max-connections-per-address',
      '400',
      '--handshake-timeout',
      '3000',
      '--run-timeout-grace',
      '1000',
      '--disconnect-grace',
      '500',
    ]);
    baseline = fds();
  });
  afterAll(async () => {
    for (const w of open) w.close();
    await master?.kill('SIGKILL');
  });

  const runners = async (): Promise<Record<string, unknown>[]> => {
    const r = await httpRequest(master.url, {
      path: '/api/runners',
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    return (JSON.parse(r.body) as { runners: Record<string, unknown>[] }).runners;
  };

  test('1,000 runners that say hello and never report: descriptors under baseline + 1,050, peak RSS under 300 MB; their 1,000 tasks come back as ETO after run timeout + grace; honest clients served', async () => {
    const swarm: WireClient[] = [];
    for (let i = 0; i < 1000; i += 50) {
      const batch = await Promise.all(
        Array.from({ length: 50 }, async (_, j) => {
          const w = await WireClient.open(master.url, {
            nsp: '/runner',
            token: TOKEN,
            localAddress: addresses[(i + j) % addresses.length],
          });
          await w.emitWithAck('runner:hello', { runnerId: `swarm-${i + j}`, slots: 1, workers: 1 });
          return w;
        }),
      );
      swarm.push(...batch);
    }
    open.push(...swarm);
    expect(fds()).toBeLessThan(baseline + 1050);
    const feeder = await WireClient.open(master.url, { nsp: '/feeder', token: TOKEN });
    open.push(feeder);
    const tasks = Array.from({ length: 1000 }, (_, i) => ({
      id: `swarm-task-${i}`,
      module: 'ok',
      runTimeout: 1000,
      maxAttempts: 1,
    }));
    expect(await feeder.emitWithAck('tasks:add', { tasks })).toMatchObject({ ok: true });
    const outcomes = () =>
      feeder.events
        .filter(([name]) => name === 'task:outcomes')
        .flatMap(([, p]) => (p as { outcomes: TaskOutcome[] }).outcomes);
    await feeder.until(
      () => outcomes().length >= 1000,
      () => `1,000 outcomes (got ${outcomes().length})`,
    );
    expect(outcomes().every((o) => o.state === 'failed' && o.error?.code === 'ETO')).toBe(true);
    await assertMasterAlive(master.url, TOKEN);
    expect(master.memory().peakMb).toBeLessThan(300);
    for (const w of swarm) w.close();
    feeder.close();
  });

  test('1,000 connect / hello / disconnect cycles: the runners are forgotten after the disconnect grace, descriptors back under baseline + 20, peak RSS under 300 MB', async () => {
    for (let i = 0; i < 1000; i += 20) {
      await Promise.all(
        Array.from({ length: 20 }, async (_, j) => {
          const w = await WireClient.open(master.url, {
            nsp: '/runner',
            token: TOKEN,
            localAddress: addresses[(i + j) % addresses.length],
          });
          await w.emitWithAck('runner:hello', { runnerId: `cycle-${i + j}`, slots: 1, workers: 1 });
          w.close();
          await w.closed;
        }),
      );
    }
    // A master in another process tells only through its API: asked until it holds (bounded).
    await eventually(async () => !(await runners()).some((r) => /^(cycle|swarm)-/.test(String(r.id))), {
      what: 'the registry to forget the runners that left',
    });
    expect(fds()).toBeLessThan(baseline + 20);
    expect(master.memory().peakMb).toBeLessThan(300);
    await assertMasterAlive(master.url, TOKEN);
  });

  test('2,000 WebSockets that never authenticate (1,000 join no namespace, 1,000 give a wrong token): guests capped at 1,400, each closed within the handshake timeout, descriptors back under baseline + 20', async () => {
    const idle: WireClient[] = [];
    const refused: Promise<unknown>[] = [];
    for (let i = 0; i < 2000; i += 100) {
      await Promise.all(
        Array.from({ length: 100 }, async (_, j) => {
          const n = i + j;
          const opts = { nsp: '/feeder', localAddress: addresses[n % addresses.length] };
          if (n % 2 === 0) {
            const w = await WireClient.open(master.url, { ...opts, join: false }).catch(() => null);
            if (w) idle.push(w);
          } else
            refused.push(WireClient.open(master.url, { ...opts, token: 'wrong' }).catch((e: Error) => e));
        }),
      );
    }
    open.push(...idle);
    expect(fds()).toBeLessThan(baseline + 1420);
    // Honest clients get in while they wait.
    await assertMasterAlive(master.url, TOKEN);
    await within(3000 + WAIT_MS, Promise.all(idle.map((w) => w.closed)), 'every idle WebSocket closed');
    await Promise.all(refused);
    expect(fds()).toBeLessThan(baseline + 20);
    expect(master.memory().peakMb).toBeLessThan(300);
  });
});

import type { Master } from '../../master/master';
import { spawnCli, startMaster } from '../helpers/cluster';
import { eventually, waitForEvent } from '../helpers/wait';
import { testDbName } from '../helpers/db';
import { rawFeeder, rawRunner, type RawFeeder, type RawRunner } from '../helpers/raw-clients';

/**
 * Runner data and `requires`, targeting one runner, and an operator's drain through the HTTP API.
 * Each test has a master and runners of its own: what one test leaves assigned cannot show in another.
 */
describe('routing and draining', () => {
  let master: Master;
  let feeder: RawFeeder;
  let gpu: RawRunner;
  let plain: RawRunner;

  beforeEach(async () => {
    master = await startMaster(testDbName('routing'), { token: 'routing-secret-token' });
    const auth = { token: 'routing-secret-token' };
    feeder = await rawFeeder(master.url, auth);
    gpu = await rawRunner(
      master.url,
      { runnerId: 'gpu-box', slots: 50, data: { gpu: true, region: 'eu' } },
      auth,
    );
    plain = await rawRunner(
      master.url,
      { runnerId: 'plain-box', slots: 50, data: { gpu: false, region: ['eu', 'us'] } },
      auth,
    );
  });
  afterEach(async () => {
    feeder?.close();
    gpu?.close();
    plain?.close();
    await master?.close();
  });

  const api = (path: string, init: RequestInit = {}, token = 'routing-secret-token') =>
    fetch(`${master.url}${path}`, { ...init, headers: { authorization: `Bearer ${token}` } });

  test('a task with `requires` only goes to runners whose data matches', async () => {
    await feeder.add([
      ...Array.from({ length: 5 }, (_, i) => ({
        id: `needs-gpu-${i}`,
        module: 'ok',
        requires: { gpu: true },
      })),
      ...Array.from({ length: 5 }, (_, i) => ({
        id: `needs-us-${i}`,
        module: 'ok',
        requires: { region: 'us' },
      })),
    ]);
    await gpu.until(() => gpu.assigned.filter((a) => a.id.startsWith('needs-gpu')).length === 5);
    await plain.until(() => plain.assigned.filter((a) => a.id.startsWith('needs-us')).length === 5);
    expect(plain.assigned.some((a) => a.id.startsWith('needs-gpu'))).toBe(false);
    expect(gpu.assigned.some((a) => a.id.startsWith('needs-us'))).toBe(false);
  });

  test('a task no connected runner can run waits, and fails with EATO when it has an assignTimeout', async () => {
    await feeder.add([{ id: 'needs-asia', module: 'ok', requires: { region: 'asia' }, assignTimeout: 200 }]);
    await feeder.until(() => feeder.outcomes.has('needs-asia'));
    expect(feeder.outcomes.get('needs-asia')).toMatchObject({ state: 'failed', error: { code: 'EATO' } });
    expect([...gpu.assigned, ...plain.assigned].some((a) => a.id === 'needs-asia')).toBe(false);
  });

  test('a task can be sent to one named runner', async () => {
    await feeder.add(
      Array.from({ length: 4 }, (_, i) => ({ id: `for-plain-${i}`, module: 'ok', runner: 'plain-box' })),
    );
    await plain.until(() => plain.assigned.filter((a) => a.id.startsWith('for-plain')).length === 4);
    expect(gpu.assigned.some((a) => a.id.startsWith('for-plain'))).toBe(false);
  });

  /** Adds `count` tasks for `runner` and resolves once it holds them all. */
  async function busy(runner: RawRunner, runnerId: string, count: number): Promise<void> {
    await feeder.add(
      Array.from({ length: count }, (_, i) => ({
        id: `busy-${runnerId}-${i}`,
        module: 'ok',
        runner: runnerId,
      })),
    );
    await runner.until(
      () => runner.assigned.filter((a) => a.id.startsWith(`busy-${runnerId}-`)).length === count,
    );
  }

  test('GET /api/runners lists runners with their data, slots in use and drain state; it needs the token', async () => {
    await busy(gpu, 'gpu-box', 5);
    await busy(plain, 'plain-box', 9);
    expect((await api('/api/runners', {}, 'wrong-token')).status).toBe(401);
    const body = (await (await api('/api/runners')).json()) as { runners: Record<string, unknown>[] };
    const byId = new Map(body.runners.map((r) => [r.id, r]));
    expect(byId.get('gpu-box')).toMatchObject({
      slots: 50,
      inUse: 5,
      data: { gpu: true, region: 'eu' },
      draining: false,
    });
    expect(byId.get('plain-box')).toMatchObject({ inUse: 9, data: { gpu: false } });
  });

  test('a drained runner gets no new work, keeps what it runs, and shows idle once it is done', async () => {
    await busy(gpu, 'gpu-box', 3);
    const drained = (await (await api('/api/runners/gpu-box/drain', { method: 'POST' })).json()) as {
      runner: Record<string, unknown>;
    };
    expect(drained.runner).toMatchObject({ id: 'gpu-box', draining: true, idle: false });
    const before = gpu.assigned.length;
    await feeder.add([{ id: 'after-drain', module: 'ok' }]);
    await plain.until(() => plain.assigned.some((a) => a.id === 'after-drain'));
    expect(gpu.assigned.length).toBe(before);
    const done = waitForEvent(master, 'outcomes', () => master.scheduler.finals.has('busy-gpu-box-2'));
    await gpu.finish(
      gpu.assigned.map((a) => ({ id: a.id, attempt: a.attempt, ok: true as const, result: null })),
    );
    await done;
    const body = (await (await api('/api/runners')).json()) as { runners: Record<string, unknown>[] };
    expect(body.runners.find((r) => r.id === 'gpu-box')).toMatchObject({
      draining: true,
      idle: true,
      inUse: 0,
    });
    const unknown = await api('/api/runners/nobody/drain', { method: 'POST' });
    expect({
      status: unknown.status,
      code: ((await unknown.json()) as { error: { code: string } }).error.code,
    }).toEqual({
      status: 404,
      code: 'ENORUNNER',
    });
  });

  test('taskmaster status lists the runners; taskmaster drain --wait returns once the runner has no work left', async () => {
    const run = async (args: string[]) => {
      const p = spawnCli([...args, '--master', master.url, '--token', 'routing-secret-token']);
      const code = await p.exit();
      return { code, out: p.output() };
    };
    const status = await run(['status', '--json']);
    expect(status.code).toBe(0);
    const parsed = JSON.parse(status.out.trim().split('\n').pop() as string) as { runners: { id: string }[] };
    expect(parsed.runners.map((r) => r.id).sort()).toEqual(['gpu-box', 'plain-box']);

    await busy(plain, 'plain-box', 2);
    const draining = run(['drain', 'plain-box', '--wait']);
    await eventually(async () => master.scheduler.runners.get('plain-box')?.draining); // its POST arrived
    expect(plain.assigned.length).toBeGreaterThan(0);
    await plain.finish(
      plain.assigned.map((a) => ({ id: a.id, attempt: a.attempt, ok: true as const, result: null })),
    );
    const drained = await draining;
    expect(drained.code).toBe(0);
    expect(drained.out).toContain('plain-box: no work left');
  });

  test('taskmaster undrain gives a drained runner work again; an unknown runner fails naming it', async () => {
    master.scheduler.drain('plain-box');
    const run = async (args: string[]) => {
      const p = spawnCli([...args, '--master', master.url, '--token', 'routing-secret-token']);
      return { code: await p.exit(), out: p.output() };
    };
    const undrained = await run(['undrain', 'plain-box']);
    expect(undrained.code).toBe(0);
    expect(undrained.out).toMatch(/^plain-box\tready\t/m);
    expect(master.scheduler.runners.get('plain-box')?.draining).toBe(false);
    await feeder.add([{ id: 'after-undrain', module: 'ok', runner: 'plain-box' }]);
    await plain.until(() => plain.assigned.some((a) => a.id === 'after-undrain'));

    const unknown = await run(['undrain', 'nobody']);
    expect(unknown.code).toBe(1);
    expect(unknown.out).toContain('404 ENORUNNER no runner "nobody"');
  });
});

/**
 * "Why does task T not run (on runner X)?" against a real master: GET /api/tasks/ID/why and the `why`
 * of a task's detail give the first reason the scheduler's policies give, with a stable code.
 */
import { rawFeeder, rawRunner, type RawFeeder, type RawRunner } from '../helpers/raw-clients';
import { useCluster } from '../helpers/use-cluster';

describe('why a task does not run', () => {
  let feeder: RawFeeder;
  let plain: RawRunner;

  // Declared before the cluster, so the raw clients close before the master does.
  afterAll(() => {
    feeder?.close();
    plain?.close();
  });
  const c = useCluster();
  beforeAll(async () => {
    feeder = await rawFeeder(c.url);
    plain = await rawRunner(c.url, { runnerId: 'why-plain', slots: 1, data: { gpu: false } });
  });

  const why = async (path: string) => {
    const res = await fetch(`${c.url}${path}`);
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };

  test('a task no runner is eligible for says what it requires, for every runner and for one', async () => {
    expect((await feeder.add([{ id: 'needs-gpu', module: 'ok', requires: { gpu: true } }])).ok).toBe(true);
    expect(await why('/api/tasks/needs-gpu/why')).toEqual({
      status: 200,
      body: { task: 'needs-gpu', code: 'NOT_ELIGIBLE', message: 'not eligible: requires gpu=true' },
    });
    expect((await why('/api/tasks/needs-gpu/why?runner=why-plain')).body).toMatchObject({
      runner: 'why-plain',
      code: 'NOT_ELIGIBLE',
    });
    const detail = await why('/api/tasks/needs-gpu');
    expect(detail.body.task).toMatchObject({
      why: 'not eligible: requires gpu=true',
      whyCode: 'NOT_ELIGIBLE',
    });
  });

  test('a dependent waits for its dependency; an unknown runner or task is named as such', async () => {
    expect((await feeder.add([{ id: 'after-gpu', module: 'ok', dependencies: ['needs-gpu'] }])).ok).toBe(
      true,
    );
    expect((await why('/api/tasks/after-gpu/why')).body).toMatchObject({
      code: 'DEPENDENCY',
      message: 'waiting for dependency needs-gpu (ready) not done',
    });
    expect((await why('/api/tasks/needs-gpu/why?runner=nobody')).body).toMatchObject({
      code: 'UNKNOWN_RUNNER',
    });
    expect(await why('/api/tasks/no-such-task/why')).toMatchObject({
      status: 404,
      body: { error: { code: 'ENOTFOUND' } },
    });
    expect((await why('/api/tasks/needs-gpu/why?bogus=1')).status).toBe(400);
  });

  test('a drained runner, a full one, then the task runs and is final', async () => {
    expect(c.master.scheduler.drain('why-plain')).toBe(true);
    expect((await feeder.add([{ id: 'plain-1', module: 'ok' }])).ok).toBe(true);
    expect((await why('/api/tasks/plain-1/why?runner=why-plain')).body).toMatchObject({
      code: 'DRAINING',
      message: 'runner why-plain is draining: it takes no new work',
    });
    c.master.scheduler.undrain('why-plain');
    await plain.until(() => plain.assigned.some((a) => a.id === 'plain-1'));
    expect((await why('/api/tasks/plain-1/why')).body).toMatchObject({
      code: 'ASSIGNED',
      message: 'assigned on runner why-plain (attempt 1)',
    });
    expect((await feeder.add([{ id: 'plain-2', module: 'ok' }])).ok).toBe(true);
    expect((await why('/api/tasks/plain-2/why?runner=why-plain')).body).toMatchObject({
      code: 'NO_FREE_SLOT',
    });
    await plain.finish([{ id: 'plain-1', attempt: 1, ok: true, result: 1 }]);
    await feeder.until(() => feeder.outcomes.has('plain-1'));
    expect((await why('/api/tasks/plain-1/why')).body).toMatchObject({
      code: 'FINAL',
      message: 'task plain-1 is done',
    });
  });
});

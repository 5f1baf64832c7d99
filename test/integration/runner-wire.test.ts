/**
 * What travels between the master and a runner, per task, against the real master: a result that
 * carries its attempt's start, a malformed start in such a batch, and the cancels of one tick going
 * as one message. The runner is a raw Socket.IO client, so the test sees every message.
 */
import type { Master } from '../../master/master';
import { startMaster } from '../helpers/cluster';
import { testDbName } from '../helpers/db';
import { rawFeeder, rawRunner, type RawFeeder, type RawRunner } from '../helpers/raw-clients';
import { waitForEvent } from '../helpers/wait';

describe('the runner wire', () => {
  let master: Master;
  let feeder: RawFeeder;
  let runner: RawRunner;

  beforeEach(async () => {
    master = await startMaster(testDbName('runner-wire'));
    feeder = await rawFeeder(master.url);
    runner = await rawRunner(master.url, { runnerId: 'wire-r', slots: 10 });
  });
  afterEach(async () => {
    feeder?.close();
    runner?.close();
    await master?.close();
  });

  test('a result carrying its start moves the attempt through running, with no task:started message', async () => {
    await feeder.add([{ id: 'w1', module: 'ok' }]);
    await runner.until(() => runner.assigned.some((a) => a.id === 'w1'));
    const started = waitForEvent(master, 'task:started', (rid: unknown) => rid === 'wire-r');
    const ack = await runner.socket.emitWithAck('task:results', {
      results: [{ id: 'w1', attempt: 1, ok: true, result: 'r' }],
      started: [{ id: 'w1', attempt: 1 }],
    });
    expect(ack).toEqual({ ok: true, accepted: 1, stale: 0 });
    expect(await started).toEqual(['wire-r', [{ id: 'w1', attempt: 1 }]]);
    await feeder.until(() => feeder.outcomes.has('w1'));
    expect(feeder.outcomes.get('w1')).toMatchObject({ state: 'done', result: 'r' });
    expect(master.wireCounts().in['task:started']).toBeUndefined();
    expect(master.wireCounts().in['task:results']).toBe(1);
  });

  test('a results batch with one malformed start is refused naming the field; a good report then lands', async () => {
    await feeder.add([{ id: 'w2', module: 'ok' }]);
    await runner.until(() => runner.assigned.some((a) => a.id === 'w2'));
    const refused = (await runner.socket.emitWithAck('task:results', {
      results: [{ id: 'w2', attempt: 1, ok: true, result: 'r' }],
      started: [
        { id: 'w2', attempt: 1 },
        { id: 'w2', attempt: 0 },
      ],
    })) as { ok: boolean; error?: { code: string; message: string } };
    expect(refused).toMatchObject({ ok: false, error: { code: 'EVALIDATION' } });
    expect(refused.error?.message).toContain('started[1].attempt');
    expect(master.scheduler.tasks.get('w2')?.state).toBe('assigned');
    expect(await runner.finish([{ id: 'w2', attempt: 1, ok: true, result: 'fine' }])).toMatchObject({
      ok: true,
      accepted: 1,
    });
    await feeder.until(() => feeder.outcomes.has('w2'));
    expect(feeder.outcomes.get('w2')).toMatchObject({ state: 'done', result: 'fine' });
  });

  test('the attempts cancelled in one tick reach their runner in one task:cancel', async () => {
    const ids = Array.from({ length: 5 }, (_, i) => `wc-${i}`);
    await feeder.add(
      ids.map((id) => ({ id, module: 'ok' })),
      { batch: 'wire-cancel' },
    );
    await runner.until(() => runner.assigned.length === 5);
    let messages = 0;
    runner.socket.on('task:cancel', () => messages++);
    const reply = (await feeder.socket.emitWithAck('tasks:cancel', { batch: 'wire-cancel' })) as {
      cancelled: string[];
    };
    expect(reply.cancelled.sort()).toEqual([...ids].sort());
    await runner.until(() => runner.cancelled.length === 5);
    expect(runner.cancelled.map((r) => r.id).sort()).toEqual([...ids].sort());
    expect(messages).toBe(1);
    expect(master.wireCounts().out['task:cancel']).toBe(1);
  });
});

import mongoose from 'mongoose';
import type { MasterOptions } from '../../master/options';
import { startMaster } from '../helpers/cluster';
import { eventually, waitForEvent } from '../helpers/wait';
import { testDbName, testDbUrl } from '../helpers/db';
import { rawFeeder, rawRunner, type RawFeeder, type RawRunner } from '../helpers/raw-clients';

/** Scheduling semantics driven at the protocol level: the runner here answers only when told to. */
describe('scheduling semantics', () => {
  const cleanup: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    for (const c of cleanup.splice(0).reverse()) await c();
  });

  async function setup(opts: Partial<MasterOptions> = {}, runner: { slots?: number } | null = { slots: 10 }) {
    const dbName = testDbName('sched');
    const master = await startMaster(dbName, opts);
    cleanup.push(() => master.close());
    const feeder = await rawFeeder(master.url);
    cleanup.push(() => feeder.close());
    let r: RawRunner | null = null;
    if (runner) {
      r = await rawRunner(master.url, { runnerId: 'r1', slots: runner.slots ?? 10 });
      cleanup.push(() => r!.close());
    }
    return { master, feeder, runner: r as RawRunner, dbName };
  }

  const outcome = async (feeder: RawFeeder, id: string) => {
    await feeder.until(() => feeder.outcomes.has(id));
    return feeder.outcomes.get(id)!;
  };

  test('assignTimeout: a task no runner takes fails with EATO and the master emits assigntimeout', async () => {
    const { master, feeder } = await setup({}, null);
    const emitted = waitForEvent<[{ id: string }]>(master, 'assigntimeout');
    expect((await feeder.add([{ id: 'lonely', module: 'ok', assignTimeout: 150 }])).ok).toBe(true);
    const o = await outcome(feeder, 'lonely');
    expect(o).toMatchObject({ state: 'failed', error: { code: 'EATO' }, attempts: 0 });
    expect((await emitted)[0].id).toBe('lonely');
  });

  test('timeout: a task without a result within `timeout` of the call fails with ECSTO and its attempt is cancelled', async () => {
    const { feeder, runner } = await setup();
    await feeder.add([
      { id: 'slowpoke', module: 'ok', timeout: 200 },
      { id: 'after', module: 'ok', dependencies: ['slowpoke'] },
    ]);
    await runner.until(() => runner.assigned.some((a) => a.id === 'slowpoke'));
    const o = await outcome(feeder, 'slowpoke');
    expect(o).toMatchObject({ state: 'failed', error: { code: 'ECSTO' } });
    await runner.until(() => runner.cancelled.some((c) => c.id === 'slowpoke'));
    expect((await outcome(feeder, 'after')).error?.code).toBe('EDEPFAILED');
    // A late result for the cancelled attempt changes nothing.
    const ack = (await runner.finish([{ id: 'slowpoke', attempt: 1, ok: true, result: 'late' }])) as {
      stale: number;
    };
    expect(ack.stale).toBe(1);
  });

  test('retries: a failed attempt is retried up to maxAttempts; a result for an older attempt is ignored', async () => {
    const { feeder, runner } = await setup();
    await feeder.add([{ id: 'flaky', module: 'ok', maxAttempts: 3 }]);
    await runner.until(() => runner.assigned.length === 1);
    await runner.finish([{ id: 'flaky', attempt: 1, ok: false, error: { code: 'ETASK', message: 'first' } }]);
    await runner.until(() => runner.assigned.length === 2);
    expect(runner.assigned[1]).toMatchObject({ id: 'flaky', attempt: 2 });
    const stale = (await runner.finish([{ id: 'flaky', attempt: 1, ok: true, result: 'from the past' }])) as {
      stale: number;
    };
    expect(stale.stale).toBe(1);
    await runner.finish([{ id: 'flaky', attempt: 2, ok: true, result: 'second' }]);
    expect(await outcome(feeder, 'flaky')).toMatchObject({ state: 'done', attempts: 2, result: 'second' });
  });

  test('retries: attempts run out → failed; an unrecoverable error is not retried', async () => {
    const { feeder, runner } = await setup();
    await feeder.add([
      { id: 'twice', module: 'ok', maxAttempts: 2 },
      { id: 'fatal', module: 'ok', maxAttempts: 5 },
    ]);
    await runner.until(() => runner.assigned.length === 2);
    await runner.finish([
      { id: 'twice', attempt: 1, ok: false, error: { code: 'ETASK', message: 'a' } },
      {
        id: 'fatal',
        attempt: 1,
        ok: false,
        error: { code: 'EBROKEN', message: 'bad input' },
        unrecoverable: true,
      },
    ]);
    expect(await outcome(feeder, 'fatal')).toMatchObject({
      state: 'failed',
      attempts: 1,
      error: { code: 'EBROKEN' },
    });
    await runner.until(() => runner.assigned.length === 3);
    await runner.finish([{ id: 'twice', attempt: 2, ok: false, error: { code: 'ETASK', message: 'b' } }]);
    expect(await outcome(feeder, 'twice')).toMatchObject({
      state: 'failed',
      attempts: 2,
      error: { message: 'b' },
    });
  });

  test('retry backoff: the next attempt waits the fixed delay', async () => {
    const { feeder, runner } = await setup();
    await feeder.add([
      { id: 'patient', module: 'ok', backoff: { type: 'fixed', delay: 300, jitter: false } },
    ]);
    await runner.until(() => runner.assigned.length === 1);
    const failedAt = Date.now();
    await runner.finish([{ id: 'patient', attempt: 1, ok: false, error: { code: 'ETASK', message: 'x' } }]);
    await runner.until(() => runner.assigned.length === 2);
    expect(Date.now() - failedAt).toBeGreaterThanOrEqual(290);
  });

  test('holdSimilarWork: tasks with the key of a running task are held and get its result: one execution for N', async () => {
    const { feeder, runner, dbName } = await setup({ holdSimilarWork: true });
    const ids = ['k1', 'k2', 'k3', 'k4'];
    await feeder.add([
      ...ids.map((id) => ({ id, module: 'ok', key: 'AAPL' })),
      { id: 'other', module: 'ok', key: 'MSFT' },
    ]);
    await runner.until(() => runner.assigned.length === 2);
    expect(runner.assigned.map((a) => a.id).sort()).toEqual(['k1', 'other']);
    await runner.finish([{ id: 'k1', attempt: 1, ok: true, result: { price: 42 } }]);
    for (const id of ids)
      expect(await outcome(feeder, id)).toMatchObject({ state: 'done', result: { price: 42 } });
    expect(runner.assigned.filter((a) => a.id.startsWith('k'))).toHaveLength(1);
    // In the database too: one attempt for the key; the held ones were done without one.
    const conn = await mongoose.createConnection(testDbUrl(dbName)).asPromise();
    try {
      const coll = conn.collection<{ _id: string; attempts: number; state: string }>('tasks');
      await eventually(
        async () => (await coll.countDocuments({ _id: { $in: ids }, state: 'done' })) === ids.length,
        10_000,
      );
      const docs = await coll.find({ _id: { $in: ids } }).toArray();
      expect(docs.map((d) => d.attempts).sort()).toEqual([0, 0, 0, 1]);
    } finally {
      await conn.close();
    }
  });

  test('holdSimilarWork: when the running task fails for good, the held ones get its error', async () => {
    const { feeder, runner } = await setup({ holdSimilarWork: true });
    await feeder.add([
      { id: 'lead', module: 'ok', key: 'K', maxAttempts: 1 },
      { id: 'follow', module: 'ok', key: 'K' },
    ]);
    await runner.until(() => runner.assigned.length === 1);
    await runner.finish([{ id: 'lead', attempt: 1, ok: false, error: { code: 'ETASK', message: 'nope' } }]);
    expect(await outcome(feeder, 'follow')).toMatchObject({
      state: 'failed',
      error: { code: 'ETASK', message: 'nope' },
    });
    expect(runner.assigned).toHaveLength(1);
  });

  test('cancel: a running attempt is aborted on its runner, the task is cancelled and its dependents fail', async () => {
    const { feeder, runner } = await setup();
    const added = await feeder.add(
      [
        { id: 'long', module: 'ok' },
        { id: 'needs-long', module: 'ok', dependencies: ['long'] },
        { id: 'queued', module: 'ok', priority: -1 },
      ],
      { batch: 'B1' },
    );
    expect(added.ok).toBe(true);
    await runner.until(() => runner.assigned.some((a) => a.id === 'long'));
    const reply = (await feeder.socket.emitWithAck('tasks:cancel', { ids: ['long'] })) as {
      ok: boolean;
      cancelled: string[];
    };
    expect(reply).toEqual({ ok: true, cancelled: ['long'] });
    await runner.until(() => runner.cancelled.some((c) => c.id === 'long'));
    expect(await outcome(feeder, 'long')).toMatchObject({
      state: 'cancelled',
      error: { code: 'ECANCELLED' },
    });
    expect(await outcome(feeder, 'needs-long')).toMatchObject({
      state: 'failed',
      error: { code: 'EDEPFAILED' },
    });
    const byBatch = (await feeder.socket.emitWithAck('tasks:cancel', { batch: 'B1' })) as {
      cancelled: string[];
    };
    expect(byBatch.cancelled).toEqual(['queued']);
    expect(await outcome(feeder, 'queued')).toMatchObject({ state: 'cancelled' });
  });

  test('queueLimit: an add that would exceed it is refused with EQUEUEFULL and a retry-after hint; nothing of it is stored', async () => {
    const { feeder, master, dbName } = await setup({ queueLimit: 10 }, null);
    expect((await feeder.add(Array.from({ length: 8 }, (_, i) => ({ id: `q${i}`, module: 'ok' })))).ok).toBe(
      true,
    );
    const refused = await feeder.add(Array.from({ length: 5 }, (_, i) => ({ id: `over${i}`, module: 'ok' })));
    expect(refused.ok).toBe(false);
    if (refused.ok) return;
    expect(refused.error.code).toBe('EQUEUEFULL');
    expect((refused.error.details as { retryAfterMs: number }).retryAfterMs).toBeGreaterThan(0);
    expect(master.scheduler.queuedCount()).toBe(8);
    await master.flushed(); // `tasks` shows every durable task
    const conn = await mongoose.createConnection(testDbUrl(dbName)).asPromise();
    try {
      expect(await conn.collection('tasks').countDocuments({})).toBe(8);
    } finally {
      await conn.close();
    }
    expect((await feeder.add([{ id: 'fits', module: 'ok' }])).ok).toBe(true);
  });

  test('selectRunner replaces the default choice of runner', async () => {
    const { master, feeder, runner } = await setup({
      selectRunner: (_task, runners) => runners.find((r) => r.id === 'chosen'),
    });
    const chosen = await rawRunner(master.url, { runnerId: 'chosen', slots: 10 });
    cleanup.push(() => chosen.close());
    await feeder.add(Array.from({ length: 6 }, (_, i) => ({ id: `sel${i}`, module: 'ok' })));
    await chosen.until(() => chosen.assigned.length === 6);
    expect(runner.assigned).toHaveLength(0);
  });

  test('distributeDelayMs: the master waits that long after a change before it distributes', async () => {
    const { feeder, runner } = await setup({ distributeDelayMs: 300 });
    const addedAt = Date.now();
    await feeder.add([{ id: 'later', module: 'ok' }]);
    await runner.until(() => runner.assigned.length === 1);
    expect(Date.now() - addedAt).toBeGreaterThanOrEqual(290);
  });

  test('system messages reach the master, everybody, or one client, and the sender hears when all got it', async () => {
    const { master, feeder, runner } = await setup();
    const other = await rawFeeder(master.url);
    cleanup.push(() => other.close());
    const got: string[] = [];
    for (const [name, s] of [
      ['runner', runner.socket],
      ['other', other.socket],
    ] as const) {
      s.on('sysmsg', (m: { msg: unknown; from: string }, ack: () => void) => {
        got.push(`${name}:${JSON.stringify(m.msg)}`);
        ack();
      });
    }
    const atMaster = waitForEvent<[unknown]>(master, 'sysmsg');
    const all = (await feeder.socket.emitWithAck('sysmsg:send', { msg: { do: 'something' }, to: null })) as {
      delivered: number;
    };
    expect(all.delivered).toBe(3); // master, runner, other feeder; not the sender
    expect((await atMaster)[0]).toEqual({ do: 'something' });
    expect(got.sort()).toEqual(['other:{"do":"something"}', 'runner:{"do":"something"}']);
    const one = (await feeder.socket.emitWithAck('sysmsg:send', { msg: 'just you', to: 'r1' })) as {
      delivered: number;
    };
    expect(one.delivered).toBe(1);
    expect(got).toContain('runner:"just you"');
    expect(got).not.toContain('other:"just you"');
    const onlyMaster = (await runner.socket.emitWithAck('sysmsg:send', { msg: 'm', to: 'MASTER' })) as {
      delivered: number;
    };
    expect(onlyMaster.delivered).toBe(1);
    const nobody = (await feeder.socket.emitWithAck('sysmsg:send', { msg: 'x', to: 'no-such-client' })) as {
      ok: boolean;
    };
    expect(nobody.ok).toBe(false);
  });
});

/**
 * Delayed tasks in the scheduler (`runAt`, `delay`; master/scheduler/policies/delayed.ts), on the
 * in-memory store: never assigned before their time, out of the way of ready work meanwhile, not
 * walked by distribution passes, explained, and held after their dependencies are done.
 */
import { wireError } from '../../../protocol/errors';
import { DEFAULT_POLICIES } from '../../../master/scheduler/policies/default-policies';
import type { Policy } from '../../../master/scheduler/policy';
import { eventually } from '../../helpers/wait';
import { makeRunner, makeScheduler, settle } from './harness';

describe('delayed tasks', () => {
  test('a task with delay is assigned at its time, never before, and a later ready task goes first', async () => {
    const { sched } = makeScheduler();
    const r = makeRunner('r1', { slots: 2 });
    sched.runnerUp(r, []);
    const before = Date.now();
    const reply = await sched.add(
      [
        { id: 'later', module: 'm', delay: 300, priority: 10 },
        { id: 'now', module: 'm' },
      ],
      'b',
    );
    expect(reply.ok).toBe(true);
    const runAt = sched.tasks.get('later')?.runAt as number;
    expect(runAt).toBeGreaterThanOrEqual(before + 300);
    await settle();
    expect(r.sent.map((a) => a.id)).toEqual(['now']);
    const sentAt = await eventually(() => (r.sent.length === 2 ? Date.now() : null), 5000);
    expect(r.sent[1].id).toBe('later');
    expect(sentAt).toBeGreaterThanOrEqual(runAt);
    await sched.close();
  });

  test('explain says when a delayed task may start, and a runAt in the past is ready at once', async () => {
    const { sched } = makeScheduler();
    const at = Date.now() + 3_600_000;
    await sched.add(
      [
        { id: 'iso', module: 'm', runAt: new Date(at).toISOString() },
        { id: 'past', module: 'm', runAt: Date.now() - 60_000 },
      ],
      'b',
    );
    const why = sched.explain('iso');
    expect(why.code).toBe('DELAYED');
    expect(why.message).toMatch(
      new RegExp(`^delayed until ${new Date(at).toISOString().replace(/\./g, '\\.')}, \\d+ ms left$`),
    );
    expect(Number(/, (\d+) ms left/.exec(why.message)?.[1])).toBeLessThanOrEqual(3_600_000);
    const r = makeRunner('r1');
    sched.runnerUp(r, []);
    await settle();
    expect(r.sent.map((a) => a.id)).toEqual(['past']);
    await sched.close();
  });

  test('a dependent whose time has not come stays held when its dependency is done', async () => {
    const { sched } = makeScheduler();
    const r = makeRunner('r1', { slots: 2 });
    sched.runnerUp(r, []);
    await sched.add(
      [
        { id: 'dep', module: 'm' },
        { id: 'child', module: 'm', dependencies: ['dep'], delay: 400 },
      ],
      'b',
    );
    const runAt = sched.tasks.get('child')?.runAt as number;
    await settle();
    expect(sched.explain('child').message).toMatch(
      /^waiting for dependency dep \(assigned\) not done; then delayed until /,
    );
    await sched.results('r1', [{ id: 'dep', attempt: 1, ok: true, result: 1 }]);
    await settle();
    expect(r.sent.map((a) => a.id)).toEqual(['dep']);
    expect(sched.explain('child').code).toBe('DELAYED');
    const sentAt = await eventually(() => (r.sent.length === 2 ? Date.now() : null), 5000);
    expect(r.sent[1].id).toBe('child');
    expect(sentAt).toBeGreaterThanOrEqual(runAt);
    await sched.close();
  });

  test('10,000 delayed tasks are not walked by distribution passes', async () => {
    // A task policy listed before `delayed` is asked about every task a pass takes from the queue.
    let asked = 0;
    const counter: Policy = {
      name: 'counter',
      scope: 'task',
      check: () => (asked++, null),
      describe: () => '',
    };
    const [congestion, ...rest] = DEFAULT_POLICIES;
    const { sched } = makeScheduler({ queueLimit: 20_000 }, [congestion, counter, ...rest]);
    const r = makeRunner('r1', { slots: 4 });
    sched.runnerUp(r, []);
    const delayed = Array.from({ length: 10_000 }, (_, i) => ({
      id: `d${i}`,
      module: 'm',
      delay: 3_600_000,
    }));
    await sched.add(delayed, 'b');
    for (let i = 0; i < 3; i++) {
      await sched.add([{ id: `n${i}`, module: 'm' }], 'c');
      await settle();
    }
    expect(r.sent.map((a) => a.id)).toEqual(['n0', 'n1', 'n2']);
    expect(asked).toBe(3);
    expect(sched.explain('d9999').code).toBe('DELAYED');
    await sched.close();
  });

  test('an assign timeout counts from runAt, not from the add', async () => {
    const { sched, outcomes } = makeScheduler();
    const r = makeRunner('r1');
    sched.runnerUp(r, []);
    await sched.add([{ id: 'a', module: 'm', delay: 300, assignTimeout: 100 }], 'b');
    await eventually(() => r.sent.length === 1, 5000);
    expect(outcomes).toEqual([]);
    await sched.close();
  });

  test('a retry in backoff carries retryAt into the change the store writes', async () => {
    const { sched, store } = makeScheduler({
      maxAttempts: 2,
      retryBackoff: { type: 'fixed', delay: 60_000 },
    });
    sched.runnerUp(makeRunner('r1'), []);
    await sched.add([{ id: 'a', module: 'm' }], 'b');
    await settle();
    await sched.results('r1', [{ id: 'a', attempt: 1, ok: false, error: wireError('ETASK', 'x') }]);
    const retryAt = sched.tasks.get('a')?.retryAt as number;
    expect(retryAt).toBeGreaterThan(Date.now());
    expect(store.records.at(-1)).toMatchObject({ id: 'a', state: 'ready', retryAt });
    await sched.close();

    // A scheduler started on what was stored keeps the wait, and the task's runAt.
    const next = makeScheduler({ maxAttempts: 2 });
    for (const [id, d] of store.docs) next.store.docs.set(id, { ...d });
    await next.sched.recover();
    expect(next.sched.tasks.get('a')?.retryAt).toBe(retryAt);
    const r = makeRunner('r2');
    next.sched.runnerUp(r, []);
    await settle();
    expect(r.sent).toEqual([]);
    expect(next.sched.explain('a').code).toBe('BACKOFF');
    await next.sched.close();
  });

  test('recovery restores runAt: a recovered delayed task is held until its time', async () => {
    const first = makeScheduler();
    await first.sched.add([{ id: 'a', module: 'm', delay: 3_600_000 }], 'b');
    const runAt = first.sched.tasks.get('a')?.runAt;
    await first.sched.close();
    const next = makeScheduler();
    for (const [id, d] of first.store.docs) next.store.docs.set(id, { ...d });
    await next.sched.recover();
    expect(next.sched.tasks.get('a')?.runAt).toBe(runAt);
    const r = makeRunner('r1');
    next.sched.runnerUp(r, []);
    await settle();
    expect(r.sent).toEqual([]);
    expect(next.sched.explain('a').code).toBe('DELAYED');
    await next.sched.close();
  });
});

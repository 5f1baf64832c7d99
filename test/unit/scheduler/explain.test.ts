/**
 * `Scheduler.explain`: the first reason the policy chain gives, for a task and for one runner, on the
 * in-memory store. Asked right after an add, before the deferred distribution pass runs.
 */
import { wireError } from '../../../protocol/errors';
import { makeRunner, makeScheduler, settle } from './harness';

describe('explain', () => {
  test('no runner at all, a pin to an absent runner, and a task that is queued for one that can take it', async () => {
    const { sched } = makeScheduler();
    await sched.add(
      [
        { id: 'a', module: 'm' },
        { id: 'pinned', module: 'm', runner: 'away' },
      ],
      'b',
    );
    expect(sched.explain('a')).toEqual({ code: 'NO_RUNNER', message: 'no runner is connected' });
    expect(sched.explain('pinned')).toEqual({
      code: 'NO_RUNNER',
      message: 'pinned to runner away, which is not connected',
    });
    sched.runnerUp(makeRunner('r1'), []);
    expect(sched.explain('a')).toEqual({
      code: 'QUEUED',
      message: 'queued at priority 0; runner r1 can take it',
    });
    expect(sched.explain('nope')).toMatchObject({ code: 'UNKNOWN_TASK' });
  });

  test('a queued task whose priority other groups share says it takes turns with them, and its weight', async () => {
    const { sched } = makeScheduler({ groupWeights: { big: 3 } });
    await sched.add(
      [
        { id: 'b1', module: 'm', group: 'big' },
        { id: 's1', module: 'm', group: 'small' },
        { id: 'd1', module: 'm' },
        { id: 'alone', module: 'm', group: 'small', priority: 2 },
      ],
      'b',
    );
    sched.runnerUp(makeRunner('r1'), []);
    expect(sched.explain('s1')).toEqual({
      code: 'QUEUED',
      message:
        'queued at priority 0; runner r1 can take it; group "small" takes turns with 2 other groups at this priority (weight 1 of 5)',
    });
    expect(sched.explain('d1').message).toContain('the default group takes turns with 2 other groups');
    expect(sched.explain('alone').message).toBe('queued at priority 2; runner r1 can take it');
  });

  test('a module no connected runner has: the task waits, and says so for every runner and for one', async () => {
    const { sched } = makeScheduler();
    sched.runnerUp(makeRunner('r1', { modules: ['other'] }), []);
    await sched.add([{ id: 'g', module: 'greet' }], 'b');
    await settle();
    expect(sched.tasks.get('g')?.state).toBe('ready');
    expect(sched.explain('g')).toEqual({
      code: 'NO_MODULE',
      message: 'no connected runner has module greet',
    });
    expect(sched.explain('g', 'r1')).toEqual({ code: 'NO_MODULE', message: 'runner r1 has no module greet' });
    // A runner that has it, but is busy: its reason is the better one.
    const busy = makeRunner('busy', { modules: ['greet'] });
    busy.active.add('x');
    sched.runnerUp(busy, []);
    expect(sched.explain('g')).toEqual({
      code: 'NO_FREE_SLOT',
      message: 'no free slot: runner busy runs 1 of 1',
    });
  });

  test('across runners, the one that gets furthest down the chain gives the reason', async () => {
    const { sched } = makeScheduler();
    const drained = makeRunner('drained');
    const busy = makeRunner('busy', { slots: 1 });
    sched.runnerUp(drained, []);
    sched.runnerUp(busy, []);
    sched.drain('drained');
    await sched.add([{ id: 'first', module: 'm' }], 'b');
    await settle();
    expect(sched.tasks.get('first')).toMatchObject({ state: 'assigned', who: 'busy' });
    await sched.add([{ id: 'second', module: 'm' }], 'b');
    expect(sched.explain('second', 'drained').code).toBe('DRAINING');
    expect(sched.explain('second')).toEqual({
      code: 'NO_FREE_SLOT',
      message: 'no free slot: runner busy runs 1 of 1',
    });
  });

  test('priority slots, affinity and the store being behind', async () => {
    const { sched, store } = makeScheduler();
    const r = makeRunner('r1', { slots: 2, prioritySlots: { 5: 1 } });
    const other = makeRunner('r2', { slots: 1 });
    sched.runnerUp(r, []);
    await sched.add([{ id: 'low-1', module: 'm' }], 'b');
    await settle();
    await sched.add(
      [
        { id: 'low-2', module: 'm' },
        { id: 'sticky', module: 'm', affinity: 'acct' },
      ],
      'b',
    );
    expect(sched.explain('low-2', 'r1').code).toBe('PRIORITY_SLOTS');
    expect(sched.explain('sticky', 'r1').code).toBe('PRIORITY_SLOTS');
    await settle(); // `sticky`'s key is allocated to r1, the only runner
    sched.runnerUp(other, []);
    expect(sched.explain('sticky', 'r2')).toEqual({
      code: 'AFFINITY',
      message: 'affinity key "acct" held by runner r1',
    });
    store.folder.congested = true;
    expect(sched.explain('low-2').code).toBe('STORE_BEHIND');
  });

  test('a task waiting out its retry backoff says so', async () => {
    const { sched } = makeScheduler({ maxAttempts: 2, retryBackoff: { type: 'fixed', delay: 60_000 } });
    sched.runnerUp(makeRunner('r1'), []);
    await sched.add([{ id: 'a', module: 'm' }], 'b');
    await settle();
    await sched.results('r1', [{ id: 'a', attempt: 1, ok: false, error: wireError('ETASK', 'x') }]);
    expect(sched.explain('a')).toMatchObject({ code: 'BACKOFF' });
    expect(sched.explain('a').message).toMatch(/^waiting out the retry backoff after ETASK: \d+ ms left$/);
    await sched.close();
  });
});

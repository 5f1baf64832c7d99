/**
 * The policy list is data: a policy added to it holds tasks in `distribute`, `explain` reports its
 * reason, and the core's wake-up heap queues its tasks again at the time it gives. And `explain`
 * tells what `distribute` did, since both walk the same list.
 */
import { DEFAULT_POLICIES } from '../../../master/scheduler/policies/default-policies';
import { makeRunner, makeScheduler, settle } from './harness';
import { X_WAIT_MS, xWaits } from './x-waits';

describe('a policy added to the list', () => {
  // Timers and the clock are fake; the scheduler's next-tick passes (setImmediate) stay real.
  beforeEach(() => {
    jest.useFakeTimers({ doNotFake: ['setImmediate', 'nextTick', 'queueMicrotask'], now: 1_000_000 });
  });
  afterEach(() => jest.useRealTimers());

  test('holds its tasks until its time, explain gives its reason, and the wake-up heap runs them then', async () => {
    const { sched } = makeScheduler({}, [...DEFAULT_POLICIES, xWaits]);
    const r = makeRunner('r1', { slots: 2 });
    sched.runnerUp(r, []);
    await sched.add(
      [
        { id: 'x1', module: 'xray' },
        { id: 'y1', module: 'yak' },
      ],
      'b',
    );
    await settle();
    expect(sched.tasks.get('y1')?.state).toBe('assigned');
    expect(sched.tasks.get('x1')?.state).toBe('ready');
    expect(sched.explain('x1')).toEqual({
      code: 'X_TOO_EARLY',
      message: `module xray starts with x: it waits ${X_WAIT_MS} ms more`,
    });
    expect(sched.explain('x1', 'r1').code).toBe('X_TOO_EARLY');

    jest.advanceTimersByTime(X_WAIT_MS - 1);
    await settle();
    expect(sched.tasks.get('x1')?.state).toBe('ready');
    expect(sched.explain('x1').message).toBe('module xray starts with x: it waits 1 ms more');

    jest.advanceTimersByTime(1);
    await settle();
    expect(sched.tasks.get('x1')).toMatchObject({ state: 'assigned', who: 'r1' });
    expect(r.sent.map((a) => a.id)).toEqual(['y1', 'x1']);
    await sched.close();
  });

  test('without it in the list, the same task runs at once', async () => {
    const { sched } = makeScheduler({}, DEFAULT_POLICIES);
    sched.runnerUp(makeRunner('r1'), []);
    await sched.add([{ id: 'x1', module: 'xray' }], 'b');
    await settle();
    expect(sched.tasks.get('x1')?.state).toBe('assigned');
    await sched.close();
  });
});

describe('explain tells what distribute did', () => {
  test('after a pass, no ready task is explained as queued, and each gives the reason of its policy', async () => {
    const { sched } = makeScheduler();
    const gpu = makeRunner('gpu', { slots: 1, data: { gpu: true }, modules: ['render', 'm'] });
    const reserved = makeRunner('reserved', { slots: 2, prioritySlots: { 5: 2 }, modules: ['m'] });
    const drained = makeRunner('drained', { slots: 4, modules: ['m', 'render'] });
    for (const r of [gpu, reserved, drained]) sched.runnerUp(r, []);
    sched.drain('drained');
    await sched.add(
      [
        { id: 'render-1', module: 'render', requires: { gpu: true } },
        { id: 'render-2', module: 'render', requires: { gpu: true } },
        { id: 'low', module: 'm' },
        { id: 'typo', module: 'mm' },
        { id: 'pinned', module: 'm', runner: 'away' },
        { id: 'cpu', module: 'render', requires: { gpu: false } },
      ],
      'b',
    );
    await settle();
    const codes = Object.fromEntries(
      [...sched.tasks.values()]
        .filter((t) => t.state === 'ready')
        .map((t) => [t.id, sched.explain(t.id).code]),
    );
    expect(codes).toEqual({
      'render-2': 'NO_FREE_SLOT',
      low: 'PRIORITY_SLOTS',
      typo: 'NO_MODULE',
      pinned: 'NO_RUNNER',
      cpu: 'NOT_ELIGIBLE',
    });
    expect(sched.tasks.get('render-1')?.who).toBe('gpu');
  });
});

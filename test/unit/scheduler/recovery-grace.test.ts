/**
 * Attempts that outlive their master or their connection: after a restart the recovered attempts wait
 * for their runners from when the master accepts connections, a runner's hello settles its own at
 * once, and a runner that comes back late with an attempt nobody took since takes it back.
 */
import type { TaskDoc } from '../../../models/task';
import type { TaskRecord } from '../../../master/task-record';
import type { TaskState } from '../../../protocol/states';
import { eventually, within } from '../../helpers/wait';
import { makeRunner, makeScheduler, settle } from './harness';

function doc(id: string, state: TaskState, extra: Partial<TaskDoc> = {}): TaskDoc {
  return {
    _id: id,
    batch: 'b',
    module: 'm',
    params: [],
    state,
    attempts: 0,
    maxAttempts: 3,
    created: 0,
    updated: 0,
    rev: 0,
    ...extra,
  };
}

/** An attempt of `id` that was running on runner `who` when the master stopped. */
const running = (id: string, who: string) => doc(id, 'running', { attempts: 1, assigned: { who, when: 1 } });

/** Resolves when task `id` is recorded in state `state`. */
function whenState(sched: ReturnType<typeof makeScheduler>['sched'], id: string, state: TaskState) {
  return new Promise<TaskRecord>((resolve) =>
    sched.observers.push({
      added: () => undefined,
      discarded: () => undefined,
      changed: (t) => t.id === id && t.state === state && resolve(t),
    }),
  );
}

describe('the recovery grace', () => {
  test('counts from when the master accepts connections, not from the end of recovery', async () => {
    const { sched, store } = makeScheduler({ recoveryGraceMs: 20 });
    store.docs.set('o', running('o', 'r1'));
    await sched.recover();
    // Recovery ended long ago in grace terms; the master does not listen yet: nothing is requeued.
    await new Promise((r) => setTimeout(r, 200));
    expect(sched.tasks.get('o')).toMatchObject({ state: 'running', who: 'r1', uncounted: 0 });
    const requeued = whenState(sched, 'o', 'ready');
    sched.startRecoveryGrace();
    await within(2000, requeued, () => 'the orphan requeued after the grace');
    expect(sched.tasks.get('o')).toMatchObject({ state: 'ready', uncounted: 1 });
  });

  test("a runner's hello settles its recovered attempts at once: kept if reported, requeued if not", async () => {
    const { sched, store } = makeScheduler({ recoveryGraceMs: 60_000 });
    store.docs.set('kept', running('kept', 'r1'));
    store.docs.set('gone', running('gone', 'r1'));
    store.docs.set('other', running('other', 'r2'));
    await sched.recover();
    sched.startRecoveryGrace();
    const r1 = makeRunner('r1', { slots: 2 });
    expect(sched.runnerUp(r1, [{ id: 'kept', attempt: 1 }])).toEqual([]);
    await settle();
    expect(sched.tasks.get('kept')).toMatchObject({ state: 'running', who: 'r1' });
    // Not reported by its runner: it runs nowhere, so it runs again without waiting out 60 s.
    expect(sched.tasks.get('gone')).toMatchObject({ uncounted: 1 });
    expect(sched.tasks.get('gone')?.attempts).toBe(2); // reassigned at once, to r1's free slot
    expect(sched.tasks.get('other')).toMatchObject({ state: 'running', who: 'r2', uncounted: 0 });
    const r2 = makeRunner('r2');
    sched.runnerUp(r2, [{ id: 'other', attempt: 1 }]);
    // Every runner that held one has reported: the result of the kept ones is accepted.
    expect(await sched.results('r2', [{ id: 'other', attempt: 1, ok: true, result: 7 }])).toEqual({
      accepted: 1,
      stale: 0,
    });
    await sched.close();
  });
});

describe('a runner that comes back late with an attempt takes it back', () => {
  test('after a restart: the recovered attempt requeued after the grace, its finished result accepted', async () => {
    const { sched, store, outcomes } = makeScheduler({ recoveryGraceMs: 10 });
    store.docs.set('o', running('o', 'r1'));
    await sched.recover();
    const requeued = whenState(sched, 'o', 'ready');
    sched.startRecoveryGrace();
    await within(2000, requeued, () => 'the orphan requeued after the grace');
    // Its runner reconnects now, holding the attempt's finished result.
    const r1 = makeRunner('r1');
    expect(sched.runnerUp(r1, [{ id: 'o', attempt: 1 }])).toEqual([]);
    expect(await sched.results('r1', [{ id: 'o', attempt: 1, ok: true, result: 'x' }])).toEqual({
      accepted: 1,
      stale: 0,
    });
    await eventually(() => outcomes.some((o) => o.id === 'o'));
    expect(outcomes.find((o) => o.id === 'o')).toMatchObject({ state: 'done', result: 'x', attempts: 1 });
    expect(r1.sent).toEqual([]); // never sent again
    expect(store.docs.get('o')).toMatchObject({ state: 'done', attempts: 1 });
  });

  test('after its disconnect grace: the retried task is taken back while no other runner has it', async () => {
    const { sched, outcomes } = makeScheduler({ maxAttempts: 3 });
    const r1 = makeRunner('r1');
    sched.runnerUp(r1, []);
    await sched.add([{ id: 't', module: 'm' }], 'b');
    await settle();
    expect(r1.sent.map((a) => [a.id, a.attempt])).toEqual([['t', 1]]);
    sched.runnerDown('r1', 0);
    expect(sched.tasks.get('t')).toMatchObject({ state: 'ready', error: { code: 'ERUNNERLOST' } });
    const back = makeRunner('r1');
    expect(sched.runnerUp(back, [{ id: 't', attempt: 1 }])).toEqual([]);
    expect(sched.tasks.get('t')).toMatchObject({ state: 'running', who: 'r1', attempts: 1, error: null });
    await sched.results('r1', [{ id: 't', attempt: 1, ok: true, result: 1 }]);
    await eventually(() => outcomes.some((o) => o.id === 't'));
    expect(outcomes.find((o) => o.id === 't')).toMatchObject({ state: 'done', attempts: 1 });
  });

  test('not once another runner was given the task: the late report is dropped', async () => {
    const { sched } = makeScheduler({ maxAttempts: 3 });
    const r1 = makeRunner('r1');
    sched.runnerUp(r1, []);
    await sched.add([{ id: 't', module: 'm' }], 'b');
    await settle();
    sched.runnerDown('r1', 0);
    const r2 = makeRunner('r2');
    sched.runnerUp(r2, []);
    await settle();
    expect(sched.tasks.get('t')).toMatchObject({ state: 'assigned', who: 'r2', attempts: 2 });
    expect(sched.runnerUp(makeRunner('r1'), [{ id: 't', attempt: 1 }])).toEqual([{ id: 't', attempt: 1 }]);
    expect(sched.tasks.get('t')).toMatchObject({ who: 'r2', attempts: 2 });
  });
});

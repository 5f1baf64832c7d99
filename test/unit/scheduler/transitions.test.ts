/**
 * One test per transition of the scheduler's core, on the in-memory store: the state it leaves, the
 * record the store is asked to write, and the outcome. And the table: an illegal change throws.
 */
import { wireError } from '../../../protocol/errors';
import {
  assertTransition,
  canTransition,
  IllegalTransition,
  TASK_STATES,
  TRANSITIONS,
  type TaskState,
} from '../../../protocol/states';
import type { TaskRecord } from '../../../master/task-record';
import { makeRunner, makeScheduler, settle } from './harness';

describe('the transition table', () => {
  test('an illegal change throws an internal error naming the task, from and to', () => {
    expect(() => assertTransition('t-1', 'done', 'running')).toThrow(IllegalTransition);
    try {
      assertTransition('t-1', 'waiting', 'assigned');
      throw new Error('no throw');
    } catch (e) {
      expect(e).toMatchObject({ code: 'EINTERNAL', taskId: 't-1', from: 'waiting', to: 'assigned' });
      expect((e as Error).message).toContain('waiting → assigned');
    }
  });

  test('final states lead nowhere but to a retry (failed, cancelled) or an EPERSIST failure', () => {
    expect(TRANSITIONS.done).toEqual(['failed']);
    expect(canTransition('failed', 'ready')).toBe(true);
    expect(canTransition('failed', 'done')).toBe(false);
    expect(canTransition('done', 'ready')).toBe(false);
    // No state moves to itself.
    for (const s of TASK_STATES) expect(canTransition(s, s as TaskState)).toBe(false);
  });

  test('the scheduler asserts the table on every change it records', () => {
    const { sched } = makeScheduler();
    const record = (sched as unknown as { record(t: TaskRecord, to: TaskState): void }).record.bind(sched);
    const t = { id: 'x', state: 'ready', rev: 0 } as TaskRecord;
    expect(() => record(t, 'running')).toThrow('illegal transition of task "x": ready → running');
    expect(t.state).toBe('ready');
  });
});

/** A scheduler with runner r1 (one slot) and task `a` of batch `b` assigned to it as attempt 1. */
async function oneAssigned(opts: Parameters<typeof makeScheduler>[0] = {}) {
  const made = makeScheduler(opts);
  const r = makeRunner('r1');
  made.sched.runnerUp(r, []);
  await made.sched.add([{ id: 'a', module: 'm' }], 'b');
  await settle();
  return { ...made, r };
}

describe('transitions', () => {
  test('assign: ready → assigned, attempt 1, slot reserved; sent once the record is durable', async () => {
    const { sched, store, r } = await oneAssigned();
    const t = sched.tasks.get('a');
    expect(t).toMatchObject({ state: 'assigned', attempts: 1, who: 'r1' });
    expect(r.active.has('a')).toBe(true);
    expect(store.records.at(-1)).toMatchObject({ id: 'a', state: 'assigned', attempts: 1, how: 'update' });
    expect(r.sent).toEqual([{ id: 'a', attempt: 1, module: 'm', params: [], priority: 0, batch: 'b' }]);
  });

  test("assign: a dependent carries its dependencies' results, read from the store once memory evicted them", async () => {
    const { sched } = makeScheduler({ finalCacheSize: 1, maxDependencyBytes: 100 });
    const r = makeRunner('r1', { slots: 3 });
    sched.runnerUp(r, []);
    await sched.add(
      [
        { id: 'a', module: 'm' },
        { id: 'b', module: 'm' },
      ],
      'b',
    );
    await settle();
    await sched.results('r1', [{ id: 'a', attempt: 1, ok: true, result: 'x'.repeat(60) }]);
    await sched.results('r1', [{ id: 'b', attempt: 1, ok: true, result: 1 }]);
    expect(sched.finals.has('a')).toBe(false); // evicted: only b's outcome is kept
    await sched.add(
      [
        { id: 'd1', module: 'm', dependencies: ['a', 'b'] },
        { id: 'd2', module: 'm', dependencies: ['b', 'a', 'b'] },
      ],
      'b',
    );
    await settle();
    const deps = (id: string) => r.sent.find((a) => a.id === id)?.dependencies;
    expect(deps('d1')).toEqual([
      { id: 'a', result: 'x'.repeat(60) },
      { id: 'b', result: 1 },
    ]);
    expect(deps('d2')).toEqual([
      { id: 'b', result: 1 },
      { id: 'a', result: 'x'.repeat(60) },
    ]);
    // 63 bytes of results each: two messages, so none carries more than maxDependencyBytes.
    expect(r.messages.slice(-2).map((m) => m.map((a) => a.id))).toEqual([['d1'], ['d2']]);
    expect(r.sent.find((a) => a.id === 'd1')?.maxDependencyBytes).toBeUndefined();
  });

  test('markRunning: assigned → running on the runner report, folded lazily', async () => {
    const { sched, store } = await oneAssigned();
    sched.started('r1', [{ id: 'a', attempt: 1 }]);
    expect(sched.tasks.get('a')?.state).toBe('running');
    expect(store.records.at(-1)).toMatchObject({ id: 'a', state: 'running', how: 'fold' });
    // A report for another attempt changes nothing.
    sched.started('r1', [{ id: 'a', attempt: 2 }]);
    expect(store.statesOf('a')).toEqual(['assigned', 'running']);
  });

  test('complete: done with the result, slot released, outcome delivered', async () => {
    const { sched, store, outcomes, r } = await oneAssigned();
    const acked = await sched.results('r1', [{ id: 'a', attempt: 1, ok: true, result: 42 }]);
    await settle();
    expect(acked).toEqual({ accepted: 1, stale: 0 });
    expect(sched.tasks.has('a')).toBe(false);
    expect(r.active.size).toBe(0);
    expect(store.docs.get('a')).toMatchObject({ state: 'done', result: 42 });
    expect(outcomes).toEqual([{ id: 'a', batch: 'b', state: 'done', attempts: 1, result: 42 }]);
  });

  test('markReady: waiting → ready when the last dependency is done', async () => {
    const { sched, store } = makeScheduler();
    sched.runnerUp(makeRunner('r1'), []);
    await sched.add(
      [
        { id: 'a', module: 'm' },
        { id: 'b', module: 'm', dependencies: ['a'] },
      ],
      'b',
    );
    await settle();
    expect(sched.tasks.get('b')?.state).toBe('waiting');
    await sched.results('r1', [{ id: 'a', attempt: 1, ok: true }]);
    expect(store.statesOf('b')[0]).toBe('ready');
    await settle();
    expect(sched.tasks.get('b')?.state).toBe('assigned');
  });

  test('shareOutcome: a task parked behind a leader with its key is done with the leader result, never run', async () => {
    const { sched, outcomes } = makeScheduler({ holdSimilarWork: true });
    const r = makeRunner('r1', { slots: 2 });
    sched.runnerUp(r, []);
    await sched.add([{ id: 'lead', module: 'm', key: 'k' }], 'b');
    await settle();
    await sched.add([{ id: 'twin', module: 'm', key: 'k' }], 'b');
    await settle();
    expect(sched.tasks.get('twin')).toMatchObject({ state: 'ready', attempts: 0 });
    expect(sched.explain('twin')).toEqual({
      code: 'PARKED',
      message: 'waits behind task lead (same key "k")',
    });
    await sched.results('r1', [{ id: 'lead', attempt: 1, ok: true, result: 'x' }]);
    await settle();
    expect(outcomes.find((o) => o.id === 'twin')).toEqual({
      id: 'twin',
      batch: 'b',
      state: 'done',
      attempts: 0,
      result: 'x',
    });
    expect(r.sent.map((a) => a.id)).toEqual(['lead']);
  });

  test('retry: a failed attempt goes back to ready, counted, and runs again as attempt 2', async () => {
    const { sched, store, r } = await oneAssigned({ maxAttempts: 2 });
    await sched.results('r1', [{ id: 'a', attempt: 1, ok: false, error: wireError('ETASK', 'boom') }]);
    expect(store.records.find((x) => x.id === 'a' && x.state === 'ready')).toBeDefined();
    await settle();
    expect(sched.tasks.get('a')).toMatchObject({ state: 'assigned', attempts: 2, uncounted: 0 });
    expect(r.sent.map((a) => a.attempt)).toEqual([1, 2]);
  });

  test('requeueUncounted: an attempt given back runs again without counting against maxAttempts', async () => {
    const { sched, store } = await oneAssigned({ maxAttempts: 1 });
    expect(sched.release('r1', [{ id: 'a', attempt: 1 }])).toBe(1);
    expect(sched.tasks.get('a')).toMatchObject({ state: 'ready', uncounted: 1 });
    expect(store.statesOf('a')).toEqual(['assigned', 'ready']);
    await settle();
    expect(sched.tasks.get('a')).toMatchObject({ state: 'assigned', attempts: 2 });
    // Attempt 2 failing is the first counted failure: with maxAttempts 1 it fails for good.
    await sched.results('r1', [{ id: 'a', attempt: 2, ok: false, error: wireError('ETASK', 'x') }]);
    expect(sched.finals.get('a')).toMatchObject({ state: 'failed', attempts: 2 });
  });

  test('requeueUncounted on EMODULE: the runner lacks the module from then on, another runner gets the attempt', async () => {
    const { sched, store, outcomes, r } = await oneAssigned({ maxAttempts: 1 });
    r.moduleIndex = new Map([['m', 'v1']]);
    const other = makeRunner('r2', { modules: ['m@v1'] });
    sched.runnerUp(other, []);
    const emodule = wireError('EMODULE', 'module m failed to load: SyntaxError');
    await sched.results('r1', [{ id: 'a', attempt: 1, ok: false, error: emodule, moduleHash: 'v1' }]);
    expect(sched.tasks.get('a')).toMatchObject({ state: 'ready', uncounted: 1 });
    expect(store.statesOf('a')).toEqual(['assigned', 'ready']);
    await settle();
    // r1 has a free slot again, but not the module: the attempt goes to r2, and is not counted.
    expect(sched.tasks.get('a')).toMatchObject({ state: 'assigned', who: 'r2', attempts: 2 });
    expect(r.sent.map((a) => a.attempt)).toEqual([1]);
    await sched.results('r2', [{ id: 'a', attempt: 2, ok: true, result: 'hi' }]);
    await settle();
    expect(outcomes).toEqual([expect.objectContaining({ id: 'a', state: 'done', attempts: 2 })]);
  });

  test('EMODULE for a task pinned to its runner (a broadcast copy) fails it there: it can run nowhere else', async () => {
    const { sched, outcomes } = makeScheduler({ maxAttempts: 3 });
    const r = makeRunner('r1', { modules: ['m@v1'] });
    sched.runnerUp(r, []);
    await sched.add([{ id: 'p', module: 'm', runner: 'r1' }], 'b');
    await settle();
    const emodule = wireError('EMODULE', 'module m exports no function');
    await sched.results('r1', [{ id: 'p', attempt: 1, ok: false, error: emodule, moduleHash: 'v1' }]);
    await settle();
    expect(outcomes).toEqual([
      expect.objectContaining({ id: 'p', state: 'failed', attempts: 1, error: emodule }),
    ]);
    expect(r.unloadable?.get('m')).toBe('v1');
  });

  test('EMODULE from every runner: the task waits, says why, and runs once a runner announces another version', async () => {
    const { sched, outcomes, r } = await oneAssigned({ maxAttempts: 1 });
    sched.modulesChanged(r, [{ name: 'm', hash: 'v1' }]);
    const emodule = wireError('EMODULE', 'module m exports no function');
    await sched.results('r1', [{ id: 'a', attempt: 1, ok: false, error: emodule, moduleHash: 'v1' }]);
    await settle();
    expect(sched.tasks.get('a')).toMatchObject({ state: 'ready', attempts: 1, uncounted: 1 });
    expect(sched.explain('a')).toEqual({
      code: 'NO_MODULE',
      message:
        'no connected runner can load module m: r1 reported EMODULE for the version it announces; it runs once a runner announces another version, or one that has it connects',
    });
    expect(sched.waitingForModules()).toEqual([{ module: 'm', tasks: 1, why: sched.explain('a').message }]);
    expect(outcomes).toEqual([]);
    sched.modulesChanged(r, [{ name: 'm', hash: 'v2' }]);
    await settle();
    expect(sched.tasks.get('a')).toMatchObject({ state: 'assigned', who: 'r1', attempts: 2 });
    expect(sched.waitingForModules()).toEqual([]);
  });

  test('failForGood: attempts exhausted fail the task, and its dependents transitively with EDEPFAILED', async () => {
    const { sched, outcomes } = makeScheduler();
    sched.runnerUp(makeRunner('r1'), []);
    await sched.add(
      [
        { id: 'a', module: 'm' },
        { id: 'b', module: 'm', dependencies: ['a'] },
        { id: 'c', module: 'm', dependencies: ['b'] },
      ],
      'g',
    );
    await settle();
    await sched.results('r1', [{ id: 'a', attempt: 1, ok: false, error: wireError('ETASK', 'boom') }]);
    await settle();
    expect(outcomes.map((o) => [o.id, o.state, o.error?.code])).toEqual([
      ['a', 'failed', 'ETASK'],
      ['b', 'failed', 'EDEPFAILED'],
      ['c', 'failed', 'EDEPFAILED'],
    ]);
  });

  test('failForGood (cancelled): a running attempt is cancelled where it runs and its slot freed', async () => {
    const { sched, store, r } = await oneAssigned();
    expect(sched.cancel(['a'], undefined)).toEqual(['a']);
    expect(r.cancelled).toEqual([{ id: 'a', attempt: 1 }]);
    expect(r.active.size).toBe(0);
    expect(store.docs.get('a')).toMatchObject({ state: 'cancelled', error: { code: 'ECANCELLED' } });
    // A late result of the cancelled attempt is stale.
    expect(await sched.results('r1', [{ id: 'a', attempt: 1, ok: true }])).toEqual({ accepted: 0, stale: 1 });
  });

  test('persistFailed: a result the store refuses fails the task with EPERSIST, in the outcome too', async () => {
    const { sched, store, outcomes } = await oneAssigned();
    store.refuse('a');
    await sched.results('r1', [{ id: 'a', attempt: 1, ok: true, result: 'too big' }]);
    await settle();
    expect(outcomes).toEqual([
      expect.objectContaining({
        id: 'a',
        state: 'failed',
        error: expect.objectContaining({ code: 'EPERSIST' }),
      }),
    ]);
    expect(store.docs.get('a')?.state).toBe('failed');
    expect(sched.stats).toMatchObject({ done: 0, failed: 1 });
  });

  test('revive: a failed task is ready again with a fresh budget; its attempt numbers keep growing', async () => {
    const { sched, store } = await oneAssigned();
    await sched.results('r1', [{ id: 'a', attempt: 1, ok: false, error: wireError('ETASK', 'x') }]);
    const doc = store.docs.get('a');
    if (!doc) throw new Error('no document for a');
    expect(sched.revive([{ ...doc }], new Map())).toEqual({ revived: ['a'], refused: [] });
    expect(store.statesOf('a').slice(-2)).toEqual(['failed', 'ready']);
    await settle();
    expect(sched.tasks.get('a')).toMatchObject({ state: 'assigned', attempts: 2, uncounted: 1 });
    // A live task is refused.
    expect(sched.revive([{ ...doc }], new Map()).refused[0].error.code).toBe('ESTATE');
  });
});

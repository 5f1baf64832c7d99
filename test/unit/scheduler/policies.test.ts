/**
 * One test per policy the scheduler composes (master/scheduler/policies/), each on its own and, where the
 * policy shapes distribution, through a scheduler on the in-memory store.
 */
import { wireError } from '../../../protocol/errors';
import type { TaskDoc } from '../../../models/task';
import { affinity, Affinity, hashAllocate } from '../../../master/scheduler/policies/affinity';
import {
  eligible,
  explainMissingModule,
  hasModule,
  moduleRouting,
  placeable,
  requirements,
} from '../../../master/scheduler/policies/eligibility';
import { RunnerRegistry, type RunnerEntry } from '../../../master/scheduler/runner-registry';
import { Parking, parking } from '../../../master/scheduler/policies/parking';
import { applyJournal, recordFromDoc } from '../../../master/scheduler/policies/recovery';
import { backoff, RetryPolicy } from '../../../master/scheduler/policies/retry';
import { Limits } from '../../../master/scheduler/policies/limits';
import { draining } from '../../../master/scheduler/policies/runner-state';
import { selectMostAvailable } from '../../../master/scheduler/policies/selection';
import { freeSlot, prioritySlots } from '../../../master/scheduler/policies/slots';
import { Timeouts } from '../../../master/scheduler/policies/timeouts';
import type { PolicyContext, RunnerPolicy } from '../../../master/scheduler/policy';
import { newTaskRecord, type TaskRecord } from '../../../master/task-record';
import { makeRunner, makeScheduler, settle } from './harness';

function task(id: string, extra: Partial<TaskRecord> = {}): TaskRecord {
  return Object.assign(
    newTaskRecord({ id, module: 'm', batch: 'b', created: 0, state: 'ready', maxAttempts: 1 }),
    extra,
  );
}

/** What the policies read, around the given runners and state. */
function context(
  runners: RunnerEntry[] = [],
  state: { parking?: Parking; affinity?: Affinity } = {},
): PolicyContext {
  const registry = new RunnerRegistry();
  for (const r of runners) registry.put(r);
  return {
    runners: registry,
    parking: state.parking ?? new Parking(false),
    affinity: state.affinity ?? new Affinity({ allocate: () => undefined, deallocate: () => undefined }),
    folder: { congested: false },
    limits: new Limits(new Map(), { requeue: () => undefined, wakeAt: () => undefined }),
    // None of the built-in policies reads an option.
    opts: {} as PolicyContext['opts'],
  };
}

/** A runner policy's answer for `t` on `r`, as `explain` words it; null if it lets `t` go there. */
function why(p: RunnerPolicy, t: Partial<TaskRecord>, r: RunnerEntry, ctx = context([r])) {
  const full = task('t', t);
  const code = p.check(ctx, full, r);
  return code === null ? null : { code, message: p.describe(ctx, code, full, r) };
}

describe('eligibility (routing)', () => {
  test('a pin and requires decide where a task may run; new placements skip original-protocol runners', async () => {
    const gpu = makeRunner('gpu', { data: { gpu: true, zones: ['eu', 'us'] } });
    const plain = makeRunner('plain');
    const legacy = makeRunner('legacy-1', { legacy: true });
    expect(eligible(gpu, { requires: { gpu: true, zones: 'eu' } })).toBe(true);
    expect(eligible(plain, { requires: { gpu: true } })).toBe(false);
    expect(why(requirements, { requires: { gpu: true } }, plain)).toEqual({
      code: 'NOT_ELIGIBLE',
      message: 'not eligible: requires gpu=true',
    });
    expect(why(requirements, { requires: { gpu: true, zones: 'eu' } }, gpu)).toBeNull();
    expect(why(requirements, { runner: 'plain' }, gpu)?.message).toBe('not eligible: pinned to runner plain');
    expect([gpu, plain, legacy].map(placeable)).toEqual([true, true, false]);

    // Through the scheduler: the gpu task waits for the gpu runner; a broadcast skips the legacy one.
    const { sched } = makeScheduler();
    sched.runnerUp(plain, []);
    sched.runnerUp(legacy, []);
    await sched.add([{ id: 'g', module: 'm', requires: { gpu: true } }], 'b');
    await settle();
    expect(sched.tasks.get('g')?.state).toBe('ready');
    expect(sched.explain('g', 'plain').code).toBe('NOT_ELIGIBLE');
    sched.runnerUp(gpu, []);
    await settle();
    expect(sched.tasks.get('g')).toMatchObject({ state: 'assigned', who: 'gpu' });
    await sched.add([{ id: 'all', module: 'm', broadcast: true }], 'b');
    expect([...sched.tasks.keys()].filter((id) => id.startsWith('all@')).sort()).toEqual([
      'all@gpu',
      'all@plain',
    ]);
  });
});

describe('module routing', () => {
  test('a task goes only to a runner that announces its module, named with or without its extension', () => {
    const has = makeRunner('has', { modules: ['greet', 'reports/daily'] });
    const lacks = makeRunner('lacks', { modules: ['other'] });
    const silent = makeRunner('silent'); // announces no modules: any module goes to it
    const legacy = makeRunner('legacy-1', { legacy: true });
    expect([has, lacks, silent, legacy].map((r) => eligible(r, { module: 'greet' }))).toEqual([
      true,
      false,
      true,
      true,
    ]);
    expect(eligible(has, { module: 'greet.js' })).toBe(true);
    expect(eligible(has, { module: 'reports/daily.ts' })).toBe(true);
    expect(eligible(has, { module: 'greet.txt' })).toBe(false);
    expect(why(moduleRouting, { module: 'greet' }, lacks)).toEqual({
      code: 'NO_MODULE',
      message: 'runner lacks has no module greet',
    });
    expect(explainMissingModule('greet', new Map([['lacks', lacks]]))).toEqual({
      code: 'NO_MODULE',
      message: 'no connected runner has module greet',
    });
    expect(
      explainMissingModule(
        'greet',
        new Map([
          ['lacks', lacks],
          ['has', has],
        ]),
      ),
    ).toBeNull();
  });

  test('a runner that reported EMODULE lacks the module until it announces another version of it', () => {
    const registry = new RunnerRegistry();
    const r = makeRunner('r', { modules: ['greet@v1', 'other@v1'] });
    const legacy = makeRunner('legacy-1', { legacy: true });
    registry.put(r);
    registry.markUnloadable(r, 'greet', 'v1');
    registry.markUnloadable(legacy, 'greet', null);
    expect(hasModule(r, 'greet')).toBe(false);
    expect(hasModule(r, 'other')).toBe(true);
    expect(hasModule(legacy, 'greet')).toBe(false);
    expect(hasModule(legacy, 'other')).toBe(true);
    expect(why(moduleRouting, { module: 'greet' }, r)?.message).toBe(
      'runner r failed to load module greet (version v1) (EMODULE): it gets none until it announces another version',
    );
    // The same version announced again changes nothing; another one lifts the mark.
    registry.setModules(r, [{ name: 'greet', hash: 'v1' }]);
    expect(hasModule(r, 'greet')).toBe(false);
    // A reconnect (a new entry under the same id) keeps the mark.
    const again = makeRunner('r', { modules: ['greet@v1'] });
    again.conn = r.conn;
    registry.put(again);
    expect(hasModule(again, 'greet')).toBe(false);
    registry.setModules(again, [{ name: 'greet', hash: 'v2' }]);
    expect(hasModule(again, 'greet')).toBe(true);
  });

  test('tasks whose module no connected runner has leave the queue until a runner joins or announces modules', async () => {
    const { sched } = makeScheduler();
    const queue = () => (sched as unknown as { ready: { size: number } }).ready.size;
    const r = makeRunner('r1', { slots: 5, modules: ['ok'] });
    sched.runnerUp(r, []);
    await sched.add(
      Array.from({ length: 50 }, (_, i) => ({ id: `typo-${i}`, module: 'tpyo' })),
      'b',
    );
    await sched.add([{ id: 'fine', module: 'ok' }], 'b');
    await settle();
    // Out of the queue, so later passes (one per result) do not walk them again; still ready.
    expect(queue()).toBe(0);
    expect(sched.tasks.get('typo-0')?.state).toBe('ready');
    expect(sched.tasks.get('fine')?.state).toBe('assigned');
    expect(sched.explain('typo-0').message).toBe('no connected runner has module tpyo');
    sched.modulesChanged(r, [
      { name: 'ok', hash: 'h1' },
      { name: 'tpyo', hash: 'h1' },
    ]);
    await settle();
    expect(r.active.size).toBe(5);
    expect(queue()).toBe(46);
  });

  test('broadcast copies and new affinity keys go only to runners that have the module', async () => {
    const { sched } = makeScheduler();
    sched.runnerUp(makeRunner('has', { modules: ['m'] }), []);
    sched.runnerUp(makeRunner('lacks', { modules: ['other'] }), []);
    await sched.add([{ id: 'all', module: 'm', broadcast: true }], 'b');
    expect([...sched.tasks.keys()].filter((id) => id.startsWith('all@'))).toEqual(['all@has']);
    await sched.add([{ id: 'k', module: 'm', affinity: 'acct' }], 'b');
    await settle();
    expect(sched.allocations.get('acct')).toBe('has');
  });
});

describe('slots and priority slots', () => {
  test('a runner with priority slots keeps them for higher priorities, and says so', () => {
    const r = makeRunner('r', { slots: 2, prioritySlots: { 5: 1 } });
    const room = (priority: number) => why(freeSlot, { priority }, r) ?? why(prioritySlots, { priority }, r);
    expect(room(0)).toBeNull();
    r.active.add('low');
    r.perRange[0]++;
    expect(room(0)).toEqual({
      code: 'PRIORITY_SLOTS',
      message: 'priority slots reserved: runner r keeps its free slots for priorities above 0',
    });
    expect(room(5)).toBeNull();
    r.active.add('high');
    r.perRange[1]++;
    expect(room(5)).toEqual({ code: 'NO_FREE_SLOT', message: 'no free slot: runner r runs 2 of 2' });
    expect(why(draining, {}, r)).toBeNull();
    r.draining = true;
    expect(why(draining, {}, r)).toEqual({
      code: 'DRAINING',
      message: 'runner r is draining: it takes no new work',
    });
  });
});

describe('parking (hold-similar-work)', () => {
  test('one leader per key; the others park behind it and are handed back when it is final', () => {
    const p = new Parking(true);
    const lead = task('lead', { key: 'k' });
    const twin = task('twin', { key: 'k' });
    expect(p.leaderOf(twin)).toBeUndefined();
    p.lead(lead);
    expect(p.leaderOf(lead)).toBeUndefined();
    expect(p.leaderOf(twin)).toBe(lead);
    const ctx = context([], { parking: p });
    expect(parking.check(ctx, twin, 0)).toBe('PARKED');
    parking.hold?.(ctx, twin);
    expect(twin.parkedBehind).toBe(lead);
    expect(parking.describe(ctx, 'PARKED', twin, 0)).toBe('waits behind task lead (same key "k")');
    expect(p.takeParked(lead)).toEqual([twin]);
    expect(twin.parkedBehind).toBeNull();
    p.resign(lead);
    expect(p.leaderOf(twin)).toBeUndefined();
    // Off: nothing parks.
    const off = new Parking(false);
    off.lead(lead);
    expect(off.leaderOf(twin)).toBeUndefined();
  });
});

describe('affinity', () => {
  test('a key is allocated once among placeable eligible runners, written, explained, and deallocated', () => {
    const written = new Map<string, string>();
    const a = new Affinity({
      allocate: (d) => written.set(d.key, d.runner),
      deallocate: (k) => written.delete(k),
    });
    const ctx = context([makeRunner('x'), makeRunner('y'), makeRunner('legacy-z', { legacy: true })], {
      affinity: a,
    });
    const runners = ctx.runners;
    const t = task('t', { affinity: 'acct-1' });
    const owner = a.runnerFor(t, runners);
    expect(owner).toBe(hashAllocate('acct-1', ['x', 'y']));
    expect(written.get('acct-1')).toBe(owner);
    runners.get(owner as string)!.draining = true; // a key stays with its runner while drained
    expect(a.runnerFor(t, runners)).toBe(owner);
    const other = owner === 'x' ? 'y' : 'x';
    expect(why(affinity, t, runners.get(other)!, ctx)).toEqual({
      code: 'AFFINITY',
      message: `affinity key "acct-1" held by runner ${owner}`,
    });
    expect(why(affinity, t, runners.get(owner as string)!, ctx)).toBeNull();
    expect(a.allocationsOf(owner as string)).toEqual([{ key: 'acct-1', runner: owner }]);
    expect(a.deallocate('acct-1')).toBe(true);
    expect(written.size).toBe(0);
    expect(a.runnerFor(t, runners)).toBe(other); // only the other one is placeable now
  });
});

describe('runner selection', () => {
  test('the most available runner: free slots weighed by how fast it ran the module', () => {
    const slow = makeRunner('slow', { slots: 4 });
    const fast = makeRunner('fast', { slots: 2 });
    slow.runTimes = new Map([['m', 400]]);
    fast.runTimes = new Map([['m', 100]]);
    expect(selectMostAvailable(task('t'), [slow, fast])?.id).toBe('fast');
    expect(selectMostAvailable(task('t', { module: 'other' }), [slow, fast])?.id).toBe('slow');
  });
});

describe('retry policy', () => {
  test('counted attempts against maxAttempts, unrecoverable never retried, backoff fixed or exponential', () => {
    const p = new RetryPolicy({ type: 'exponential', delay: 100, jitter: false });
    const t = task('t', { attempts: 2, maxAttempts: 2 });
    expect(p.mayRetry(t, false)).toBe(false);
    t.uncounted = 1;
    expect(p.mayRetry(t, false)).toBe(true);
    expect(p.mayRetry(t, true)).toBe(false);
    expect(p.delay(task('a', { attempts: 1 }))).toBe(100);
    expect(p.delay(task('a', { attempts: 3 }))).toBe(400);
    expect(p.delay(task('a', { attempts: 20 }))).toBe(60_000);
    expect(p.delay(task('a', { attempts: 3, backoff: { type: 'fixed', delay: 50, jitter: false } }))).toBe(
      50,
    );
    const now = Date.now();
    t.retryAt = now + 1000;
    t.error = wireError('ETASK', 'x');
    expect(backoff.check(context(), t, now)).toBe('BACKOFF');
    expect(backoff.describe(context(), 'BACKOFF', t, now)).toBe(
      'waiting out the retry backoff after ETASK: 1000 ms left',
    );
    expect(backoff.wakeAt?.(context(), t, now)).toBe(now + 1000);
    expect(backoff.check(context(), t, now + 1000)).toBeNull();
  });
});

describe('timeouts', () => {
  test('ECSTO before EATO; a parked task never times out waiting for a runner', () => {
    const expired: [string, string][] = [];
    const to = new Timeouts(1000, {
      expired: (t, e) => expired.push([t.id, e.code]),
      runExpired: () => undefined,
      swept: () => undefined,
      sweepAt: () => undefined,
    });
    const now = 10_000;
    const both = task('both', { deadline: now - 1, timeout: 5, assignTimeout: 1, readyAt: 0 });
    const assign = task('assign', { assignTimeout: 100, readyAt: now - 100 });
    const parked = task('parked', { assignTimeout: 100, readyAt: 0, parkedBehind: task('leader') });
    const fresh = task('fresh', { assignTimeout: 100, readyAt: now });
    for (const t of [both, assign, parked, fresh]) to.track(t);
    to.sweep(now);
    expect(expired).toEqual([
      ['both', 'ECSTO'],
      ['assign', 'EATO'],
    ]);
  });

  test('an attempt past its run deadline is handed back once; one that moved on, or reported, is not', () => {
    const ran: string[] = [];
    const to = new Timeouts(1000, {
      expired: () => undefined,
      runExpired: (t) => ran.push(t.id),
      swept: () => undefined,
      sweepAt: () => undefined,
    });
    const now = 10_000;
    const late = task('late', { state: 'running', runDeadline: now - 1 });
    const assigned = task('assigned', { state: 'assigned', runDeadline: now });
    const early = task('early', { state: 'running', runDeadline: now + 1 });
    const reported = task('reported', { state: 'ready', runDeadline: now - 1 });
    for (const t of [late, assigned, early, reported]) to.trackRun(t);
    to.sweep(now);
    to.sweep(now);
    expect(ran).toEqual(['late', 'assigned']);
  });

  test('through the scheduler: no runner within assignTimeout fails the task with EATO and says so', async () => {
    const { sched } = makeScheduler({ timeoutSweepMs: 5 });
    const timedOut = new Promise((resolve) => sched.once('assigntimeout', resolve));
    await sched.add([{ id: 'lonely', module: 'm', assignTimeout: 20 }], 'b');
    expect(await timedOut).toMatchObject({ id: 'lonely', state: 'failed', error: { code: 'EATO' } });
    await sched.close();
  });
});

describe('recovery', () => {
  const doc = (id: string, state: TaskDoc['state'], extra: Partial<TaskDoc> = {}): TaskDoc => ({
    _id: id,
    batch: 'b',
    module: 'm',
    params: [],
    state,
    attempts: 0,
    maxAttempts: 1,
    created: 0,
    updated: 0,
    rev: 0,
    ...extra,
  });

  test('a record from its document, with a newer journal change on top', () => {
    const t = recordFromDoc(doc('a', 'assigned', { attempts: 1, assigned: { who: 'r1', when: 5 } }), 3);
    expect(t).toMatchObject({
      id: 'a',
      _id: 'a',
      state: 'assigned',
      attempts: 1,
      who: 'r1',
      assignedAt: 5,
      maxAttempts: 1,
    });
    applyJournal(t, { id: 'a', rev: 3, state: 'done', attempts: 1, result: 7, completed: 9 });
    expect(t).toMatchObject({ state: 'done', rev: 3, result: 7, finishedAt: 9, who: null });
  });

  test('through the scheduler: ready tasks are queued, waiting ones with done dependencies become ready, orphans are requeued uncounted', async () => {
    const { sched, store } = makeScheduler({ recoveryGraceMs: 10 });
    store.docs.set('dep', doc('dep', 'done'));
    store.docs.set('w', doc('w', 'waiting', { dependencies: ['dep'] }));
    store.docs.set('r', doc('r', 'ready'));
    store.docs.set('o', doc('o', 'running', { attempts: 1, assigned: { who: 'gone' } }));
    expect(await sched.recover()).toEqual({ tasks: 3, orphans: 1, dropped: 0 });
    expect(sched.tasks.get('w')?.state).toBe('ready');
    sched.startRecoveryGrace(); // the master listens
    const requeued = new Promise<void>((resolve) => {
      sched.observers.push({
        added: () => undefined,
        discarded: () => undefined,
        changed: (t) => t.id === 'o' && t.state === 'ready' && resolve(),
      });
    });
    await requeued;
    expect(sched.tasks.get('o')).toMatchObject({ state: 'ready', uncounted: 1 });
    const r = makeRunner('r1', { slots: 3 });
    sched.runnerUp(r, []);
    await settle();
    expect(r.sent.map((a) => a.id).sort()).toEqual(['o', 'r', 'w']);
  });
});

/**
 * Admission of adds (master/scheduler/admission.ts) through the scheduler: concurrent adds are checked against
 * the queue limit one after the other, so together they never exceed it.
 */
import type { TaskDoc } from '../../../models/task';
import { makeScheduler } from './harness';

function storedDoc(id: string, state: TaskDoc['state']): TaskDoc {
  return {
    _id: id,
    batch: 'old',
    module: 'm',
    params: [],
    state,
    attempts: 1,
    maxAttempts: 1,
    created: 0,
    updated: 0,
    rev: 1,
  };
}

describe('admission', () => {
  test('concurrent adds beyond the queue limit: the first fits, the others are refused with EQUEUEFULL', async () => {
    const { sched } = makeScheduler({ queueLimit: 15 });
    const batch = (b: number) => Array.from({ length: 10 }, (_, i) => ({ id: `t-${b}-${i}`, module: 'm' }));
    const replies = await Promise.all([
      sched.add(batch(0), 'b0'),
      sched.add(batch(1), 'b1'),
      sched.add(batch(2), 'b2'),
    ]);
    expect(replies.map((r) => (r.ok ? 'ok' : r.error.code))).toEqual(['ok', 'EQUEUEFULL', 'EQUEUEFULL']);
    expect(sched.queuedCount()).toBe(10);
  });

  test("onExisting 'skip': ids in memory, final or only stored are skipped as existing, in place; the rest is added", async () => {
    const { sched, store } = makeScheduler();
    await sched.add(
      [
        { id: 'live', module: 'm' },
        { id: 'fin', module: 'm' },
      ],
      'first',
    );
    sched.cancel(['fin'], undefined);
    store.docs.set('stored', storedDoc('stored', 'failed'));
    const reply = await sched.add(
      [
        { id: 'new-1', module: 'm' },
        { id: 'live', module: 'other', params: [1] },
        { id: 'stored', module: 'm' },
        { id: 'fin', module: 'm' },
        { id: 'new-2', module: 'm', dependencies: ['live'] },
      ],
      'second',
      undefined,
      'skip',
    );
    expect(reply).toEqual({
      ok: true,
      batch: 'second',
      tasks: [
        { id: 'new-1', _id: 'new-1' },
        { id: 'live', _id: 'live', existing: { state: 'ready', batch: 'first' } },
        { id: 'stored', _id: 'stored', existing: { state: 'failed', batch: 'old' } },
        { id: 'fin', _id: 'fin', existing: { state: 'cancelled', batch: 'first' } },
        { id: 'new-2', _id: 'new-2' },
      ],
    });
    // The existing task is left as it was; a dependency on its id is a dependency on it.
    expect(sched.tasks.get('live')).toMatchObject({ module: 'm', paramsJson: '[]', batch: 'first' });
    expect(sched.tasks.get('live')?.dependents.map((d) => d.id)).toEqual(['new-2']);
    expect(sched.tasks.get('new-2')?.state).toBe('waiting');
    // A dependency on a skipped id whose task failed fails the dependent, as any failed dependency does.
    const after = await sched.add(
      [
        { id: 'stored', module: 'm' },
        { id: 'needs-stored', module: 'm', dependencies: ['stored'] },
      ],
      'third',
      undefined,
      'skip',
    );
    expect(after.ok).toBe(true);
    expect(sched.finals.get('needs-stored')).toMatchObject({
      state: 'failed',
      error: { code: 'EDEPFAILED' },
    });
    // By default the same add is refused, naming the id at its place in the batch.
    const refused = await sched.add(
      [
        { id: 'new-3', module: 'm' },
        { id: 'stored', module: 'm' },
      ],
      'x',
    );
    expect(refused).toMatchObject({
      ok: false,
      error: {
        code: 'EVALIDATION',
        message: expect.stringContaining('tasks[1].id: id "stored" is already taken'),
      },
    });
    expect(sched.tasks.has('new-3')).toBe(false);
  });

  test("onExisting 'skip', two adds of one id at once: the first adds it, the other gets it as existing", async () => {
    const { sched, store } = makeScheduler();
    store.docs.set('dep', storedDoc('dep', 'done'));
    // Both look the ids up in the database before either is admitted.
    const task = [{ id: 'same', module: 'm', dependencies: ['dep'] }];
    const [a, b] = await Promise.all([
      sched.add(task, 'a', undefined, 'skip'),
      sched.add(task, 'b', undefined, 'skip'),
    ]);
    expect([a, b]).toEqual([
      { ok: true, batch: 'a', tasks: [{ id: 'same', _id: 'same' }] },
      {
        ok: true,
        batch: 'b',
        tasks: [{ id: 'same', _id: 'same', existing: { state: 'ready', batch: 'a' } }],
      },
    ]);
    expect(sched.stats.added).toBe(1);
  });

  test('a dependency neither in memory nor stored is refused; one only stored is looked up', async () => {
    const { sched, store } = makeScheduler();
    const unknown = await sched.add([{ id: 'x', module: 'm', dependencies: ['nowhere'] }], 'b');
    expect(unknown).toMatchObject({ ok: false, error: { code: 'EVALIDATION' } });
    store.docs.set('old', {
      _id: 'old',
      batch: 'b',
      module: 'm',
      params: [],
      state: 'done',
      attempts: 1,
      maxAttempts: 1,
      created: 0,
      updated: 0,
      rev: 1,
    });
    expect(await sched.add([{ id: 'y', module: 'm', dependencies: ['old'] }], 'b')).toMatchObject({
      ok: true,
    });
    expect(sched.tasks.get('y')?.state).toBe('ready');
  });
});

/**
 * Admission of adds (master/admission.ts) through the scheduler: concurrent adds are checked against
 * the queue limit one after the other, so together they never exceed it.
 */
import { makeScheduler } from './harness';

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

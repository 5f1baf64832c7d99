/**
 * The limits policy in the scheduler (in-memory store, recording runners): a task held by a limit
 * keeps its place among the tasks of its priority, a newer task never passes an older one waiting
 * at the same gate, and a limit lifted hands back what it held; the rules' parser names what is wrong.
 */
import { limitRules, parseLimit } from '../../../master/scheduler/limit-spec';
import { makeRunner, makeScheduler, settle } from './harness';

describe('limits in the scheduler', () => {
  test('a task held by a cap goes back to its place: ahead of the tasks of its priority queued after it', async () => {
    const { sched } = makeScheduler({ limits: ['module:lim=1 concurrent'] });
    const r = makeRunner('r1', { slots: 3 });
    await sched.add(
      ['l1', 'l2'].map((id) => ({ id, module: 'lim' })),
      'b1',
    );
    await sched.add(
      ['u1', 'u2', 'u3'].map((id) => ({ id, module: 'other' })),
      'b2',
    );
    sched.runnerUp(r, []);
    await settle();
    // l2 waits for the cap; u3 for a slot.
    expect(r.sent.map((a) => a.id)).toEqual(['l1', 'u1', 'u2']);
    expect(sched.explain('l2')).toMatchObject({ code: 'LIMITED' });
    expect(sched.explain('l2').message).toMatch(
      /^limited by module:lim \(1 concurrent\): may go when one of its running tasks ends$/,
    );
    await sched.results('r1', [{ id: 'l1', attempt: 1, ok: true, result: 1 }]);
    await settle();
    // One slot and one place at the gate freed: l2 was queued before u3, so it goes first.
    expect(r.sent.map((a) => a.id)).toEqual(['l1', 'u1', 'u2', 'l2']);
    await sched.close();
  });

  test('a lifted limit hands back what it held, in order', async () => {
    const { sched } = makeScheduler({ limits: ['group:g=1 concurrent'] });
    const r = makeRunner('r1', { slots: 5 });
    sched.runnerUp(r, []);
    await sched.add(
      [
        { id: 'a', module: 'm', group: 'g' },
        { id: 'b', module: 'm', group: 'g' },
      ],
      'b1',
    );
    await settle();
    expect(r.sent.map((a) => a.id)).toEqual(['a']);
    await sched.add([{ id: 'c', module: 'm', group: 'g', priority: 0 }], 'b2');
    await settle();
    expect(sched.explain('c')).toMatchObject({ code: 'LIMITED' });
    sched.limitBook.put({ selector: 'group:g', spec: 'none', limit: {} });
    sched.applyLimits();
    await settle();
    expect(r.sent.map((a) => a.id)).toEqual(['a', 'b', 'c']);
    await sched.close();
  });

  test('bad rules are refused with what is wrong', () => {
    const msg = (text: string) => {
      const r = parseLimit(text);
      return r.ok ? null : r.message;
    };
    expect(msg('module:x')).toMatch(/no "=": give SELECTOR=SPEC/);
    expect(msg('task:x=1/s')).toMatch(/must be module:NAME, group:NAME or group:\*/);
    expect(msg('module:*=1/s')).toMatch(/module:\*/);
    expect(msg('module:x=10/2w')).toMatch(/duration must be a number and a unit/);
    expect(msg('module:x=0 concurrent')).toMatch(/count must be from 1/);
    expect(msg('module:x=')).toMatch(/empty/);
    expect(parseLimit('module:x=100/1m, 5 concurrent')).toEqual({
      ok: true,
      value: {
        selector: 'module:x',
        spec: '100/1m, 5 concurrent',
        limit: { rate: { n: 100, windowMs: 60_000 }, concurrent: 5 },
      },
    });
    expect(limitRules(['module:x=1/s', 'module:x=2/s'])).toMatchObject({ ok: false, index: 1 });
    expect(limitRules(['module:x=1/s', 'module:x=2 concurrent'])).toMatchObject({ ok: true });
  });
});

import { mostAvailable } from '../../master/scheduler/policies/selection';
import { recordRunTime, slotPlan, type RunnerEntry } from '../../master/scheduler/runner-registry';

function runner(id: string, slots: number, busy: number): RunnerEntry {
  const active = new Set(Array.from({ length: busy }, (_, i) => `${id}-${i}`));
  return {
    id,
    slots,
    workers: 1,
    data: {},
    modules: [],
    active,
    ...slotPlan(slots, undefined, false),
    connected: true,
    legacy: false,
    conn: id,
    since: 0,
    lostTimer: null,
    link: { assign: () => undefined, cancel: () => undefined },
  };
}

describe('default runner choice', () => {
  test('without measurements: the runner with the most free slots', () => {
    const a = runner('a', 4, 3);
    const b = runner('b', 4, 1);
    expect(mostAvailable('m', [a, b])?.id).toBe('b');
  });

  test('free slots are weighted by how fast each runner has run the module', () => {
    const fast = runner('fast', 4, 0);
    const slow = runner('slow', 4, 0);
    recordRunTime(fast, 'm', 100);
    recordRunTime(slow, 'm', 400);
    expect(mostAvailable('m', [slow, fast])?.id).toBe('fast');
    // … but a much freer slow runner still wins over a nearly full fast one.
    const busyFast = runner('busy-fast', 8, 7);
    recordRunTime(busyFast, 'm', 100);
    const idleSlow = runner('idle-slow', 8, 0);
    recordRunTime(idleSlow, 'm', 400);
    expect(mostAvailable('m', [busyFast, idleSlow])?.id).toBe('idle-slow');
    // Measurements are per module.
    expect(mostAvailable('other', [slow, fast])?.id).toBe('slow');
  });

  test('a runner with no free slot is never chosen', () => {
    expect(mostAvailable('m', [runner('full', 2, 2)])).toBeUndefined();
  });
});

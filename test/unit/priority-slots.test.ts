import { fits, planSlots, rangeOf, type SlotPlan } from '../../master/scheduler/priority-slots';

/** How many tasks of this priority fit alone on an empty runner. */
function capacityAlone(plan: SlotPlan, priority: number): number {
  const held = new Array(plan.cumulative.length).fill(0) as number[];
  const k = rangeOf(plan, priority);
  let n = 0;
  while (fits(plan, held, k)) {
    held[k]++;
    n++;
  }
  return n;
}

describe('priority slot guarantees', () => {
  test('100 slots with {1: 30, 2: 20}: at most 50 of [0,1), 80 of [1,2) and 100 of >= 2', () => {
    const plan = planSlots(100, { 1: 30, 2: 20 }, false);
    expect([0, 0.5, 1, 1.9, 2, 7].map((p) => capacityAlone(plan, p))).toEqual([50, 50, 80, 80, 100, 100]);
  });

  test('with sacred guarantees the limits become 50 / 80 / 70', () => {
    const plan = planSlots(100, { 1: 30, 2: 20 }, true);
    expect([0, 1, 2].map((p) => capacityAlone(plan, p))).toEqual([50, 80, 70]);
  });

  test('lower ranges never take what is guaranteed above them', () => {
    const plan = planSlots(100, { 1: 30, 2: 20 }, false);
    const held = [50, 30, 0];
    expect(fits(plan, held, 0)).toBe(false);
    expect(fits(plan, held, 1)).toBe(false); // 80 below 2 already
    expect(fits(plan, held, 2)).toBe(true);
  });

  test('without sacred guarantees the top range may take the middle range guarantee; with them it may not', () => {
    const loose = planSlots(100, { 1: 30, 2: 20 }, false);
    const sacred = planSlots(100, { 1: 30, 2: 20 }, true);
    const held = [0, 0, 70];
    expect(fits(loose, held, 2)).toBe(true);
    expect(fits(sacred, held, 2)).toBe(false);
    expect(fits(sacred, held, 1)).toBe(true);
  });

  test('no prioritySlots: every priority may use every slot', () => {
    const plan = planSlots(8, undefined, false);
    expect(capacityAlone(plan, -5)).toBe(8);
    expect(capacityAlone(plan, 100)).toBe(8);
    expect(planSlots(8, { 0: 8 }, true).cumulative).toEqual([8]);
  });
});

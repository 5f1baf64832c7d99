/**
 * Slots: a runner takes one more attempt while it has a free slot (`free-slot`, NO_FREE_SLOT) and
 * room in the task's priority range (`priority-slots`, PRIORITY_SLOTS; master/scheduler/
 * priority-slots.ts holds the arithmetic of the guarantees). A runner's slots are reserved and
 * released through the RunnerRegistry (`reserveSlot`/`releaseSlot`); a slot freed starts a pass.
 */
import { fits, rangeOf } from '../priority-slots';
import type { RunnerPolicy } from '../policy';

export const freeSlot: RunnerPolicy = {
  name: 'free-slot',
  scope: 'runner',
  check: (_ctx, _t, r) => (r.active.size < r.slots ? null : 'NO_FREE_SLOT'),
  describe: (_ctx, _code, _t, r) => `no free slot: runner ${r.id} runs ${r.active.size} of ${r.slots}`,
};

export const prioritySlots: RunnerPolicy = {
  name: 'priority-slots',
  scope: 'runner',
  // A runner without priority slots has nothing to check beyond `free-slot`.
  check: (_ctx, t, r) =>
    r.plan.thresholds.length === 0 || fits(r.plan, r.perRange, rangeOf(r.plan, t.priority))
      ? null
      : 'PRIORITY_SLOTS',
  describe: (_ctx, _code, t, r) =>
    `priority slots reserved: runner ${r.id} keeps its free slots for priorities above ${t.priority}`,
};

/**
 * Slots: whether a runner can take one more attempt of a priority now — connected, not draining, a
 * free slot, and room in the task's priority range (master/scheduler/priority-slots.ts holds the arithmetic of
 * the guarantees). A runner's slots are reserved and released through the RunnerRegistry
 * (`reserveSlot`/`releaseSlot`).
 */
import { fits, rangeOf } from '../priority-slots';
import type { RunnerEntry } from '../runner-registry';
import { reason, type Reason } from './reason';

/** Whether the runner can take one more attempt of this priority now. */
export function canTake(r: RunnerEntry, priority: number): boolean {
  return (
    r.connected &&
    !r.draining &&
    r.active.size < r.slots &&
    fits(r.plan, r.perRange, rangeOf(r.plan, priority))
  );
}

/** Why `r` takes no new work at all now; null if it does. */
export function explainRunnerState(r: RunnerEntry): Reason | null {
  if (!r.connected) return reason('DISCONNECTED', `runner ${r.id} is disconnected`);
  if (r.draining) return reason('DRAINING', `runner ${r.id} is draining: it takes no new work`);
  return null;
}

/** Why `r` has no room for an attempt of this priority now; null if it has. */
export function explainCapacity(r: RunnerEntry, priority: number): Reason | null {
  if (r.active.size >= r.slots)
    return reason('NO_FREE_SLOT', `no free slot: runner ${r.id} runs ${r.active.size} of ${r.slots}`);
  if (!fits(r.plan, r.perRange, rangeOf(r.plan, priority)))
    return reason(
      'PRIORITY_SLOTS',
      `priority slots reserved: runner ${r.id} keeps its free slots for priorities above ${priority}`,
    );
  return null;
}

/**
 * The scheduling policies in the order `distribute` and `explain` ask them (master/scheduler/
 * policy.ts): by scope — the pass, then the task, then the task on each runner — and in this order
 * within a scope. Across runners, `explain` gives the reason of the runner that got furthest down
 * the list, so a later runner policy is one a runner gets to only by passing the earlier ones.
 * Adding a policy: one file exporting it, one line here.
 */
import type { Policy } from '../policy';
import { affinity } from './affinity';
import { limited } from './limits';
import { congestion } from './congestion';
import { delayed } from './delayed';
import { moduleRouting, pinned, requirements } from './eligibility';
import { parking } from './parking';
import { backoff } from './retry';
import { connected, draining } from './runner-state';
import { freeSlot, prioritySlots } from './slots';

export const DEFAULT_POLICIES: readonly Policy[] = Object.freeze([
  congestion,
  delayed,
  backoff,
  parking,
  limited,
  pinned,
  connected,
  moduleRouting,
  draining,
  requirements,
  affinity,
  freeSlot,
  prioritySlots,
]);

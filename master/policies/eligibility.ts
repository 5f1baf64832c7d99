/**
 * Eligibility (routing): whether a task may run on a runner at all, whatever its load.
 *
 * - A task pinned with `runner` runs on that runner only.
 * - A task with `requires` runs only where each key of the runner's `data` equals the value (or, for
 *   an array, contains it).
 * - New placements — an affinity key's first runner, the copies of a broadcast — go only to
 *   `placeable` runners: connected, not draining, and speaking this protocol. An original-protocol
 *   runner's id lasts one connection (`legacy-<socket id>`), so a key or a copy pinned to it would be
 *   stranded when it leaves; it takes plain work only. Plain work is routed to it like any runner.
 */
import type { RunnerEntry } from '../runner-registry';
import { reason, type Reason } from './reason';

export interface Routable {
  runner?: string | null;
  requires?: Record<string, unknown> | null;
}

/** Whether a task may run on this runner at all: its `runner` and `requires`, against the runner's id and data. */
export function eligible(r: RunnerEntry, t: Routable): boolean {
  if (t.runner && t.runner !== r.id) return false;
  if (!t.requires) return true;
  for (const k in t.requires) {
    const want = t.requires[k];
    const have = r.data[k];
    if (Array.isArray(have) ? !have.includes(want) : have !== want) return false;
  }
  return true;
}

/** Whether new placements (affinity keys, broadcast copies) may go to this runner. */
export function placeable(r: RunnerEntry): boolean {
  return r.connected && !r.draining && !r.legacy;
}

/** Why `t` may not run on `r` at all; null if it may. */
export function explainEligibility(r: RunnerEntry, t: Routable): Reason | null {
  if (t.runner && t.runner !== r.id)
    return reason('NOT_ELIGIBLE', `not eligible: pinned to runner ${t.runner}`);
  if (!t.requires) return null;
  for (const k in t.requires) {
    const want = t.requires[k];
    const have = r.data[k];
    if (Array.isArray(have) ? !have.includes(want) : have !== want)
      return reason('NOT_ELIGIBLE', `not eligible: requires ${k}=${JSON.stringify(want)}`);
  }
  return null;
}

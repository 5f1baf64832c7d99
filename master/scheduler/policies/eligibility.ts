/**
 * Eligibility (routing): whether a task may run on a runner at all, whatever its load.
 *
 * - A task runs only on a runner that has its module: one that announced it (a task's `greet.js` is
 *   the runner's `greet`) and has not reported EMODULE for the version it announces. A runner that
 *   announces no modules (the original protocol) may run any module it has not reported EMODULE for.
 * - A task pinned with `runner` runs on that runner only.
 * - A task with `requires` runs only where each key of the runner's `data` equals the value (or, for
 *   an array, contains it).
 * - New placements — an affinity key's first runner, the copies of a broadcast — go only to
 *   `placeable` runners: connected, not draining, and speaking this protocol. An original-protocol
 *   runner's id lasts one connection (`legacy-<socket id>`), so a key or a copy pinned to it would be
 *   stranded when it leaves; it takes plain work only. Plain work is routed to it like any runner.
 */
import { announcedName } from '../../../protocol/schemas';
import type { RunnerEntry } from '../runner-registry';
import { reason, type Reason } from './reason';

export interface Routable {
  module?: string;
  runner?: string | null;
  requires?: Record<string, unknown> | null;
}

/**
 * Whether the runner can run `module`: it announces it (or announces nothing), and has not reported
 * EMODULE for the version it announces now.
 */
export function hasModule(r: RunnerEntry, module: string): boolean {
  const version = announcedVersion(r, module);
  if (version === undefined) return false;
  const failed = r.unloadable?.get(module);
  return failed === undefined || failed !== version;
}

/** The hash the runner announces for `module`; null when it announces no modules; undefined when it lacks it. */
export function announcedVersion(r: RunnerEntry, module: string): string | null | undefined {
  if (!r.moduleIndex) return null;
  return r.moduleIndex.get(module) ?? r.moduleIndex.get(announcedName(module));
}

/** Whether a task may run on this runner at all: its module, `runner` and `requires`, against the runner. */
export function eligible(r: RunnerEntry, t: Routable): boolean {
  if (t.module !== undefined && !hasModule(r, t.module)) return false;
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
  if (t.module !== undefined && !hasModule(r, t.module)) return explainModule(r, t.module);
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

function explainModule(r: RunnerEntry, module: string): Reason {
  const version = announcedVersion(r, module);
  if (version === undefined) return reason('NO_MODULE', `runner ${r.id} has no module ${module}`);
  const which = version === null ? '' : ` (version ${version})`;
  return reason(
    'NO_MODULE',
    `runner ${r.id} failed to load module ${module}${which} (EMODULE): it gets none until it announces another version`,
  );
}

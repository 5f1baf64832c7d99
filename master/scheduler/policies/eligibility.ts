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
 *
 * Three policies of the list: `pinned` (the task's runner is not connected: NO_RUNNER), `module`
 * (NO_MODULE) and `requirements` (`runner` and `requires`: NOT_ELIGIBLE). A runner joining or
 * announcing modules starts a pass; tasks whose module no connected runner has wait out of the queue
 * until then (`SchedulerCore.distribute`).
 */
import { announcedName } from '../../../protocol/schemas';
import type { RunnerPolicy, TaskPolicy } from '../policy';
import type { RunnerEntry } from '../runner-registry';
import { reason, type Reason } from './reason';

/** The runners a task may be routed among (the RunnerRegistry). */
export interface RunnerSet {
  values(): Iterable<RunnerEntry>;
}

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
  return allows(r, t);
}

/** Whether new placements (affinity keys, broadcast copies) may go to this runner. */
export function placeable(r: RunnerEntry): boolean {
  return r.connected && !r.draining && !r.legacy;
}

/** Whether `t`'s `runner` and `requires` allow `r` (its module aside). */
function allows(r: RunnerEntry, t: Routable): boolean {
  if (t.runner && t.runner !== r.id) return false;
  if (!t.requires) return true;
  for (const k in t.requires) if (!matches(r, k, t.requires[k])) return false;
  return true;
}

function matches(r: RunnerEntry, k: string, want: unknown): boolean {
  const have = r.data[k];
  return Array.isArray(have) ? have.includes(want) : have === want;
}

/** A task pinned to a runner that is not connected waits for it (its hello starts a pass). */
export const pinned: TaskPolicy = {
  name: 'pinned',
  scope: 'task',
  check: (ctx, t) => (t.runner && ctx.runners.get(t.runner)?.connected !== true ? 'NO_RUNNER' : null),
  describe: (_ctx, _code, t) => `pinned to runner ${t.runner}, which is not connected`,
};

/** A task runs only on a runner that has its module (announced, and not failed to load). */
export const moduleRouting: RunnerPolicy = {
  name: 'module',
  scope: 'runner',
  check: (_ctx, t, r) => (hasModule(r, t.module) ? null : 'NO_MODULE'),
  describe: (_ctx, _code, t, r) => explainModule(r, t.module),
  describeAll: (ctx, _code, t) => explainMissingModule(t.module, ctx.runners)?.message ?? null,
};

/** A task pinned to a runner, or with `requires`, runs only where they hold. */
export const requirements: RunnerPolicy = {
  name: 'requirements',
  scope: 'runner',
  check: (_ctx, t, r) => (allows(r, t) ? null : 'NOT_ELIGIBLE'),
  describe(_ctx, _code, t, r) {
    if (t.runner && t.runner !== r.id) return `not eligible: pinned to runner ${t.runner}`;
    for (const k in t.requires ?? {})
      if (!matches(r, k, t.requires?.[k]))
        return `not eligible: requires ${k}=${JSON.stringify(t.requires?.[k])}`;
    return 'not eligible';
  },
};

/**
 * Why no connected runner can run `module`, if none can: none announces it (a runner that has it may
 * connect later, or the name is mistyped), or those that do reported EMODULE for their version.
 */
export function explainMissingModule(module: string, runners: RunnerSet): Reason | null {
  const failed: string[] = [];
  let connected = 0;
  for (const r of runners.values()) {
    if (!r.connected) continue;
    connected++;
    if (hasModule(r, module)) return null;
    if (announcedVersion(r, module) !== undefined) failed.push(r.id);
  }
  if (connected === 0) return null;
  if (failed.length === 0) return reason('NO_MODULE', `no connected runner has module ${module}`);
  const named = failed.slice(0, 5).join(', ') + (failed.length > 5 ? ', …' : '');
  return reason(
    'NO_MODULE',
    `no connected runner can load module ${module}: ${named} reported EMODULE for the version ${failed.length === 1 ? 'it announces' : 'they announce'}; it runs once a runner announces another version, or one that has it connects`,
  );
}

function explainModule(r: RunnerEntry, module: string): string {
  const version = announcedVersion(r, module);
  if (version === undefined) return `runner ${r.id} has no module ${module}`;
  const which = version === null ? '' : ` (version ${version})`;
  return `runner ${r.id} failed to load module ${module}${which} (EMODULE): it gets none until it announces another version`;
}

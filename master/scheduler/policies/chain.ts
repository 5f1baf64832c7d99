/**
 * The per-runner part of "why does this task not run?": the policies asked in the order
 * `distribute` applies them to a runner — its state (connected, not draining), eligibility, the
 * affinity key's runner, then room (a free slot, priority slots). Slow (it walks the runners); only
 * `Scheduler.explain` calls it, never the hot path.
 */
import type { RunnerEntry } from '../runner-registry';
import type { TaskRecord } from '../../task-record';
import type { Affinity, RunnerSet } from './affinity';
import { announcedVersion, explainEligibility, hasModule } from './eligibility';
import { reason, type Reason, type ReasonCode } from './reason';
import { explainCapacity, explainRunnerState } from './slots';

/**
 * The per-runner codes in chain order: a later code means the runner got further. A runner without
 * the module comes first: when some connected runner has it, what holds that one back says more.
 */
const CHAIN: readonly ReasonCode[] = [
  'NO_MODULE',
  'DISCONNECTED',
  'DRAINING',
  'NOT_ELIGIBLE',
  'AFFINITY',
  'PRIORITY_SLOTS',
  'NO_FREE_SLOT',
];

/** Why `r` does not take `t` now; null if it would. */
export function explainOnRunner(
  t: TaskRecord,
  r: RunnerEntry,
  affinity: Affinity,
  runners: RunnerSet,
): Reason | null {
  return (
    explainRunnerState(r) ??
    explainEligibility(r, t) ??
    affinity.explain(t, r, runners) ??
    explainCapacity(r, t.priority)
  );
}

/** Why no runner takes `t` now: the reason of the runner that gets furthest down the chain. */
export function explainOnAny(t: TaskRecord, affinity: Affinity, runners: RunnerSet): Reason {
  if (t.runner && !isConnected(runners, t.runner))
    return reason('NO_RUNNER', `pinned to runner ${t.runner}, which is not connected`);
  const missing = explainMissingModule(t.module, runners);
  if (missing) return missing;
  let best: Reason | null = null;
  let rank = -1;
  for (const r of runners.values()) {
    const why = explainOnRunner(t, r, affinity, runners);
    if (!why) return queued(t, r);
    const k = CHAIN.indexOf(why.code);
    if (k > rank) [best, rank] = [why, k];
  }
  return best ?? reason('NO_RUNNER', 'no runner is connected');
}

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

export function queued(t: TaskRecord, r: RunnerEntry): Reason {
  return reason('QUEUED', `queued at priority ${t.priority}; runner ${r.id} can take it`);
}

function isConnected(runners: RunnerSet, id: string): boolean {
  for (const r of runners.values()) if (r.id === id) return r.connected;
  return false;
}

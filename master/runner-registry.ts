/**
 * Runners the master knows: their slots, the attempts they hold and how to reach them. A runner keeps
 * its entry across a disconnect for the grace period, so a quick reconnect keeps its work.
 */
import type { Assignment } from '../protocol/schemas';
import type { AttemptRef } from '../protocol/events';
import type { ModuleInfo } from '../protocol/schemas';

export interface RunnerEntry {
  id: string;
  hostname?: string;
  pid?: number;
  slots: number;
  workers: number;
  data: Record<string, unknown>;
  modules: ModuleInfo[];
  /** Task ids of the attempts this runner holds. */
  active: Set<string>;
  connected: boolean;
  legacy: boolean;
  since: number;
  send(tasks: Assignment[]): void;
  cancel(tasks: AttemptRef[], reason: string): void;
  lostTimer: NodeJS.Timeout | null;
}

export function freeSlots(r: RunnerEntry): number {
  return r.connected ? r.slots - r.active.size : 0;
}

/** Default choice: the runner with the most free slots (ties: the first registered). */
export function mostFreeSlots(runners: RunnerEntry[]): RunnerEntry | undefined {
  let best: RunnerEntry | undefined;
  let bestFree = 0;
  for (const r of runners) {
    const f = freeSlots(r);
    if (f > bestFree) {
      best = r;
      bestFree = f;
    }
  }
  return best;
}

export function describeRunner(r: RunnerEntry): Record<string, unknown> {
  return {
    id: r.id,
    hostname: r.hostname ?? null,
    pid: r.pid ?? null,
    connected: r.connected,
    legacy: r.legacy,
    slots: r.slots,
    inUse: r.active.size,
    workers: r.workers,
    data: r.data,
    modules: r.modules,
    since: r.since,
  };
}

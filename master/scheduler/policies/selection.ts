/**
 * Runner selection: among the runners that can take a task now, which one gets it. The default
 * (Argon routes to the most available node) weighs free slots by how fast each runner has run this
 * module — a runner twice as fast counts its free slots twice. Runners with no measurement yet count
 * at the average of those that have one. `SchedulerOptions.selectRunner` replaces it.
 */
import type { TaskRecord } from '../../task-record';
import { freeSlots, type RunnerEntry } from '../runner-registry';

export type RunnerSelector = (task: TaskRecord, runners: RunnerEntry[]) => RunnerEntry | undefined;

export const selectMostAvailable: RunnerSelector = (t, runners) => mostAvailable(t.module, runners);

export function mostAvailable(module: string, runners: RunnerEntry[]): RunnerEntry | undefined {
  let sum = 0;
  let count = 0;
  for (const r of runners) {
    const v = r.runTimes?.get(module);
    if (v !== undefined) {
      sum += v;
      count++;
    }
  }
  const ref = count > 0 ? sum / count : 1;
  let best: RunnerEntry | undefined;
  let bestScore = 0;
  for (const r of runners) {
    const free = freeSlots(r);
    if (free <= 0) continue;
    const avg = r.runTimes?.get(module) ?? ref;
    const score = free * (Math.max(ref, 1) / Math.max(avg, 1));
    if (score > bestScore) {
      best = r;
      bestScore = score;
    }
  }
  return best;
}

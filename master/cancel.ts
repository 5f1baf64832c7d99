/**
 * A cancel of many tasks (a whole batch of tens of thousands) in time slices: each slice cancels what
 * fits in its time through the scheduler's own `cancel`, and the event loop runs between slices, so
 * the master's sockets and `/health` are answered meanwhile. Each task is visited once (linear).
 *
 * A batch's tasks are the ones in memory when the cancel began, then once more those added to it
 * while it ran (a last pass that finds only those), so the answer is the same as one cancel in one go.
 */
import { TimeSlice } from '../common/time-slice';
import type { Scheduler } from './scheduler/scheduler';

export async function cancelInSlices(
  sched: Pick<Scheduler, 'tasks' | 'cancel'>,
  ids: string[] | undefined,
  batch: string | undefined,
  by?: string,
): Promise<string[]> {
  const slice = new TimeSlice();
  const targets = [...(ids ?? [])];
  if (batch !== undefined)
    for (const t of sched.tasks.values()) {
      if (t.batch === batch) targets.push(t.id);
      if (slice.due()) await slice.pause();
    }
  const cancelled: string[] = [];
  await slice.pieces(targets, (piece) => {
    for (const id of sched.cancel(piece, undefined, by)) cancelled.push(id);
  });
  if (batch !== undefined) for (const id of sched.cancel(undefined, batch, by)) cancelled.push(id);
  return cancelled;
}

/**
 * Hold-similar-work (`holdSimilarWork`): one task per `key` runs at a time. The first one assigned
 * leads its key; a ready task with the same key is parked behind the leader instead of running, and
 * shares the leader's outcome when it becomes final (one execution for N submissions). If the leader
 * is cancelled, its parked tasks run on their own.
 *
 * Names: a task is *parked* behind its *leader* here; a runner's slot is *taken* and *freed*
 * (RunnerRegistry). The two are unrelated.
 */
import type { TaskPolicy } from '../policy';
import type { TaskRecord } from '../../task-record';

const NONE: readonly TaskRecord[] = Object.freeze([]);

export class Parking {
  /** The leader per key: assigned or running, not final. */
  private readonly leaders = new Map<string, TaskRecord>();

  constructor(readonly enabled: boolean) {}

  /** The leader `t` must park behind now, if any. */
  leaderOf(t: TaskRecord): TaskRecord | undefined {
    if (!this.enabled || !t.key) return undefined;
    const leader = this.leaders.get(t.key);
    return leader !== t ? leader : undefined;
  }

  park(t: TaskRecord, leader: TaskRecord): void {
    (leader.parked ??= []).push(t);
    t.parkedBehind = leader;
  }

  /** `t` leaves its leader's line (it became final on its own). */
  unpark(t: TaskRecord): void {
    const list = t.parkedBehind?.parked;
    if (list) list.splice(list.indexOf(t), 1);
    t.parkedBehind = null;
  }

  /** `t` was assigned: it leads its key. */
  lead(t: TaskRecord): void {
    if (this.enabled && t.key) this.leaders.set(t.key, t);
  }

  /** `t` is final (or gone): it no longer leads its key. */
  resign(t: TaskRecord): void {
    if (t.key && this.leaders.get(t.key) === t) this.leaders.delete(t.key);
  }

  /** The tasks parked behind `leader`, unparked: the caller settles them with its outcome. */
  takeParked(leader: TaskRecord): readonly TaskRecord[] {
    const list = leader.parked;
    if (!list || list.length === 0) return NONE;
    leader.parked = [];
    for (const t of list) t.parkedBehind = null;
    return list;
  }
}

/**
 * A ready task whose key has a leader is parked behind it (held out of the queue); the leader's end
 * settles it (`SchedulerCore.settleParked`): it shares the outcome, or is queued again after a cancel.
 */
export const parking: TaskPolicy = {
  name: 'parking',
  scope: 'task',
  check: (ctx, t) => (t.parkedBehind || ctx.parking.leaderOf(t) ? 'PARKED' : null),
  describe(ctx, _code, t) {
    const leader = t.parkedBehind ?? ctx.parking.leaderOf(t);
    return `waits behind task ${leader?.id} (same key "${t.key}")`;
  },
  hold(ctx, t) {
    const leader = ctx.parking.leaderOf(t);
    if (leader) ctx.parking.park(t, leader);
  },
};

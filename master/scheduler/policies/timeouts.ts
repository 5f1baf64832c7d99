/**
 * The three timeouts a task can carry, defined in one place:
 *
 *   ECSTO  `timeout`        from the add call: no final outcome within it → the task fails for good,
 *                           whatever it is doing (`deadline` = call time + timeout). Swept here.
 *   EATO   `assignTimeout`  ready, not parked, and no runner took it within it (since `readyAt`, or
 *                           since `runAt` for a delayed task) → the task fails for good. Swept here.
 *   ETO    `runTimeout`     one attempt's run time. Enforced by the runner first: the assignment
 *                           carries it, runner/attempt-supervisor.ts cancels then kills the child
 *                           and reports ETO as the attempt's failure, which the retry policy handles
 *                           like any other. The master enforces it too, for a runner that says
 *                           nothing (wedged, or lying): an attempt with no result `runTimeout` +
 *                           `runTimeoutGraceMs` after it was assigned (`runDeadline`) fails with ETO
 *                           exactly as if its runner had reported it — counted, retried by the policy
 *                           — and its runner is told to cancel it; whatever it reports later is stale.
 *
 * The sweep runs every `timeoutSweepMs` while some tracked task is open, on the scheduler's one
 * timer (master/scheduler/wakeups.ts, through `sweepAt`); tasks with no deadline, no assign timeout
 * and no attempt with a run deadline are never tracked. Timeouts gate nothing in the policy list:
 * they end tasks (and attempts) rather than hold them.
 */
import { wireError, type WireError } from '../../../protocol/errors';
import { isFinal } from '../../../protocol/states';
import type { TaskRecord } from '../../task-record';

/** What a sweep does to a task whose timeout expired. */
export interface TimeoutSink {
  expired(t: TaskRecord, error: WireError): void;
  /** The attempt held at its run deadline has not reported: the master takes it back (ETO). */
  runExpired(t: TaskRecord): void;
  /** After every sweep (whether or not a task expired). */
  swept(): void;
  /** Asks for `sweep` at `at` (epoch ms). */
  sweepAt(at: number): void;
}

export class Timeouts {
  private readonly timed = new Set<TaskRecord>();
  /** Tasks whose current attempt has a run deadline. */
  private readonly runs = new Set<TaskRecord>();
  /** A sweep is asked for. */
  private armed = false;

  constructor(
    private readonly sweepMs: number,
    private readonly sink: TimeoutSink,
  ) {}

  /** Watches `t` if it has a call deadline or an assign timeout. */
  track(t: TaskRecord): void {
    if (!t.deadline && !t.assignTimeout) return;
    this.timed.add(t);
    this.start();
  }

  /** Watches `t`'s current attempt, which has a `runDeadline`. */
  trackRun(t: TaskRecord): void {
    if (!t.runDeadline) return;
    this.runs.add(t);
    this.start();
  }

  forget(t: TaskRecord): void {
    this.timed.delete(t);
    this.runs.delete(t);
  }

  private start(): void {
    if (this.armed) return;
    this.armed = true;
    this.sink.sweepAt(Date.now() + this.sweepMs);
  }

  /** The master's timeout `t` has run out of at `now` (ECSTO first), or null. */
  expired(t: TaskRecord, now: number): WireError | null {
    if (t.deadline && now >= t.deadline)
      return wireError('ECSTO', `no result within ${t.timeout} ms of the call`);
    if (
      t.assignTimeout &&
      t.state === 'ready' &&
      !t.parkedBehind &&
      t.readyAt &&
      now - Math.max(t.readyAt, t.runAt ?? 0) >= t.assignTimeout
    )
      return wireError('EATO', `no runner took the task within ${t.assignTimeout} ms`);
    return null;
  }

  sweep(now: number): void {
    this.armed = false;
    for (const t of this.timed) {
      if (isFinal(t.state)) {
        this.timed.delete(t);
        continue;
      }
      const error = this.expired(t, now);
      if (error) this.sink.expired(t, error);
    }
    for (const t of this.runs) {
      // Another state, or a later attempt that set no deadline: nothing of this one to watch.
      if ((t.state !== 'assigned' && t.state !== 'running') || !t.runDeadline) {
        this.runs.delete(t);
        continue;
      }
      if (now < t.runDeadline) continue;
      this.runs.delete(t);
      this.sink.runExpired(t);
    }
    if (this.timed.size > 0 || this.runs.size > 0) this.start();
    this.sink.swept();
  }
}

/**
 * One attempt from the moment it is handed to its host until its host lets go of it (after BullMQ's
 * sandbox.ts, which runs one job on a child the pool lends it). The host is a pool child for a task
 * module, or the program itself for the built-in `exec`.
 *
 * Inputs, in any order: the host's outcome (`finish`), the host dying with it (`finish` with ECRASH),
 * the run timeout, and a cancel from the master. The first of them settles the attempt; it is
 * reported at most once, and nothing after it is reported:
 *   - outcome first: reported; a later cancel is a no-op;
 *   - timeout first: ETO is reported at once, then the attempt is stopped as for a cancel, and the
 *     outcome the host may still send is ignored;
 *   - cancel first: nothing is reported (the master already knows), the attempt is stopped.
 * Stopping escalates: the host is asked to let go (the task's AbortSignal; SIGTERM for a program),
 * and if it still holds the attempt after `killGraceMs` it is killed, because a spinning task cannot be
 * stopped any other way. A killed child takes its other attempts along (ECRASH; the pool reports them).
 *
 * Timers: one per attempt with a run timeout, replaced by one for the grace when stopping; both are
 * cleared by `finish`, so an attempt that let go in time leaves none behind.
 */
import type { Logger } from '../common/logger';
import { wireError, type ReportedError, type WireError } from '../protocol/errors';
import type { ExecSpec } from './exec-task';
import type { LoadedModule } from './loader';
import type { TaskPayload } from './sandbox-messages';

/** An attempt of a task module (run in a child), or of the built-in `exec` (run here). */
export type PoolJob = {
  key: string;
  task: TaskPayload;
  /** Milliseconds from dispatch before the attempt fails with ETO. */
  runTimeout?: number;
} & ({ module: LoadedModule } | { exec: ExecSpec });

export type JobOutcome =
  | {
      ok: true;
      result: unknown;
      /** Set (and `result` null) when the result was too large to be sent from the worker: its size as JSON. */
      bytes?: number;
    }
  | { ok: false; error: ReportedError; unrecoverable?: boolean };

/** What runs an attempt: a pool child (ChildHandle) or a program (ExecProcess). */
export interface AttemptHost {
  readonly pid: number | undefined;
  /** The warning logged when the escalation ends in a kill. */
  readonly killWarning: string;
  /** Asks the attempt to let go: fires its AbortSignal, or sends its program SIGTERM. */
  cancel(key: string, error: WireError): void;
  /** Whether the host still holds the attempt (has not reported it, has not exited). */
  holds(key: string): boolean;
  /** The end of the escalation: SIGKILL, remembering why for the ECRASH of anything else it held. */
  killFor(reason: string): void;
}

/** The pool, as an attempt sees it. */
export interface AttemptOwner {
  readonly killGraceMs: number;
  readonly log: Logger;
  /** Reports the attempt's outcome; called at most once per attempt. */
  report(key: string, outcome: JobOutcome): void;
}

export class AttemptSupervisor {
  host: AttemptHost | undefined;
  /** Reported, or stopped without a report: nothing more is reported. */
  private settled = false;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    readonly job: PoolJob,
    private readonly owner: AttemptOwner,
  ) {}

  get key(): string {
    return this.job.key;
  }

  /** Not settled yet: its started and progress messages are still passed on. */
  get live(): boolean {
    return !this.settled;
  }

  /** The attempt was handed to `host`: the run timeout starts now. */
  started(host: AttemptHost): void {
    this.host = host;
    const ms = this.job.runTimeout;
    if (ms && ms > 0) this.timer = setTimeout(() => this.timeout(), ms);
  }

  /** The host let go with this outcome (or died holding the attempt): reported unless already settled. */
  finish(outcome: JobOutcome): void {
    this.clearTimer();
    if (this.settled) return;
    this.settled = true;
    this.owner.report(this.job.key, outcome);
  }

  /** Stops the attempt without reporting it (cancelled, or no longer ours). A no-op once settled. */
  cancel(error: WireError): void {
    if (this.settled) return;
    this.settled = true;
    this.stop(error);
  }

  /** The pool is closing and stops every host itself: settle quietly, leave no timer behind. */
  drop(): void {
    this.settled = true;
    this.clearTimer();
  }

  private timeout(): void {
    this.timer = null;
    if (this.settled) return;
    const { task, runTimeout } = this.job;
    const error = wireError('ETO', `run timeout: the task ran longer than ${runTimeout} ms`);
    this.owner.log.warn('task timed out', { taskId: task.id, attempt: task.attempt, runTimeout });
    this.finish({ ok: false, error });
    this.stop(error);
  }

  /** Asks the host to let go; kills it if it still holds the attempt after the grace. */
  private stop(error: WireError): void {
    this.clearTimer();
    const host = this.host;
    if (!host) return;
    host.cancel(this.job.key, error);
    this.timer = setTimeout(() => {
      this.timer = null;
      if (!host.holds(this.job.key)) return;
      const { task } = this.job;
      this.owner.log.warn(host.killWarning, {
        taskId: task.id,
        attempt: task.attempt,
        pid: host.pid,
      });
      host.killFor(`task ${task.id} (attempt ${task.attempt}) did not stop after ${error.code}`);
    }, this.owner.killGraceMs);
  }

  private clearTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }
}

/**
 * The child pool (after BullMQ's child-pool.ts): `workers` children, each running as many attempts as
 * it is given. A child is a process by default, or a worker thread with `isolation: 'thread'`; both
 * sit behind the same handle (worker-host.ts), so what follows holds for either. It forks them, chooses one per attempt, recycles and replaces them, and routes what
 * they say to the attempt it concerns; each attempt's timeout, cancel-then-kill escalation and single
 * report belong to its supervisor (attempt-supervisor.ts), and the counts a child is chosen by to the
 * child's handle (child-handle.ts).
 *
 * Choosing: the live, non-retiring child with the fewest abandoned attempts (one may be stuck in an
 * attempt until it is killed), then the fewest attempts in hand, so async tasks overlap while
 * CPU-bound ones spread over the processes. With no child alive (all died at once and the respawns
 * are backing off), attempts wait and go to the next child forked.
 *
 * A child that dies is replaced, never reused, and every attempt it held fails with ECRASH (the
 * master retries it); a child that dies before it is even ready is replaced with backoff. Recycling
 * (`maxTasksPerWorker`, `maxWorkerMemoryMb`): a child past either limit is retired as an attempt
 * settles. Its replacement is forked at once; it takes no new attempt, finishes those it holds, and is
 * then stopped; nothing it runs fails because of it.
 *
 * Built-in `exec` attempts run a program straight from here, not in a child (see exec-task.ts); the
 * program is their host, with the same supervisor.
 *
 * Ordering: a child's Completed/Failed first updates the child (its counts, a retirement, and so a
 * replacement that takes the waiting attempts), then reports the outcome, so an attempt queued by a
 * `settled` listener avoids a retiring child.
 */
import { EventEmitter } from 'node:events';
import { backoffDelay } from '../common/backoff';
import type { Logger } from '../common/logger';
import { wireError } from '../protocol/errors';
import type { AddReply } from '../protocol/schemas';
import { AttemptSupervisor, type AttemptOwner, type JobOutcome, type PoolJob } from './attempt-supervisor';
import { ChildHandle } from './child-handle';
import { ThreadHandle } from './thread-handle';
import type { ChildExit, Isolation, WorkerHost } from './worker-host';
import { ExecProcess, type ExecSpec } from './exec-task';
import { ParentCommand, type ToParent } from './sandbox-messages';

export type { JobOutcome, PoolJob } from './attempt-supervisor';

export interface PoolOptions {
  workers: number;
  /** Child processes (the default) or worker threads. */
  isolation?: Isolation;
  killGraceMs: number;
  execArgv: string[];
  orphanWatchdog: boolean;
  /** Retire a child once it has finished this many attempts. Default: never. */
  maxTasksPerWorker?: number;
  /** Retire a child whose resident set (a thread's: its heap), measured as each attempt settles, exceeds this. Default: never. */
  maxWorkerMemoryMb?: number;
  /** Longest message a child may send its runner; a longer one kills it. Default: `workerMessageLimit` of 1 MiB results. */
  maxMessageBytes?: () => number;
  logger: Logger;
}

export interface PoolEvents {
  started: [key: string];
  settled: [key: string, outcome: JobOutcome];
  progress: [key: string, progress: number];
  add: [key: string, req: { tasks: unknown[]; batch?: string }, reply: (r: AddReply) => void];
  /** A child was forked to replace one that died. */
  respawn: [pid: number | undefined];
  /** A child reached a recycling limit; `pid` is its fresh replacement. */
  recycle: [retired: number | undefined, pid: number | undefined, reason: string];
}

export class ChildPool extends EventEmitter<PoolEvents> implements AttemptOwner {
  private children: WorkerHost[] = [];
  /** Every attempt handed to a host and not let go of yet, cancelled ones included. */
  private attempts = new Map<string, AttemptSupervisor>();
  /** Jobs that arrived while no child was alive (all crashed at once and respawns are backing off). */
  private waiting: PoolJob[] = [];
  private earlyDeaths = 0;
  private respawnTimer: NodeJS.Timeout | null = null;
  /** Children that died and are not replaced yet. */
  private missing = 0;
  private closed = false;
  readonly log: Logger;
  readonly killGraceMs: number;

  constructor(private readonly opts: PoolOptions) {
    super();
    this.log = opts.logger;
    this.killGraceMs = opts.killGraceMs;
  }

  /** Forks the children and waits until each reports ready, so a broken install fails start-up. */
  async start(): Promise<void> {
    const spawned = Array.from({ length: this.opts.workers }, () => this.spawn());
    await Promise.all(spawned.map((c) => whenReady(c)));
  }

  /** Pids of the live children, for tests and diagnostics. */
  pids(): number[] {
    return this.children.filter((c) => c.alive && c.pid !== undefined).map((c) => c.pid as number);
  }

  /** Whether the attempt is being run (not counting a cancelled one still winding down). */
  has(key: string): boolean {
    return this.attempts.get(key)?.live ?? false;
  }

  run(job: PoolJob): void {
    if (this.closed || this.attempts.has(job.key)) return;
    if ('exec' in job) return this.runExec(job, job.exec);
    const child = this.choose();
    if (!child) {
      this.waiting.push(job);
      return;
    }
    const attempt = new AttemptSupervisor(job, this);
    this.attempts.set(job.key, attempt);
    attempt.started(child);
    child.start(job.key, job.task, job.module);
  }

  /** Stops an attempt without reporting it (the master cancelled or reassigned it). */
  cancel(key: string, reason = 'cancelled'): void {
    const waitingAt = this.waiting.findIndex((j) => j.key === key);
    if (waitingAt >= 0) this.waiting.splice(waitingAt, 1);
    this.attempts.get(key)?.cancel(wireError('ECANCELLED', reason));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.waiting = [];
    if (this.respawnTimer) clearTimeout(this.respawnTimer);
    const programs: ExecProcess[] = [];
    for (const a of this.attempts.values()) {
      a.drop();
      if (a.host instanceof ExecProcess) programs.push(a.host);
    }
    this.attempts.clear();
    await Promise.all([
      ...this.children.map((c) => c.stop(this.opts.killGraceMs)),
      ...programs.map((p) => p.stop(this.opts.killGraceMs)),
    ]);
    this.children = [];
  }

  /** AttemptOwner: an attempt's one report. */
  report(key: string, outcome: JobOutcome): void {
    this.emit('settled', key, outcome);
  }

  /** A child still holding an abandoned attempt may be stuck in it until the kill: avoid it if possible. */
  private choose(): WorkerHost | undefined {
    let best: WorkerHost | undefined;
    for (const c of this.children) {
      if (!c.alive || c.retiring) continue;
      if (!best || c.abandoned < best.abandoned || (c.abandoned === best.abandoned && c.load < best.load))
        best = c;
    }
    return best;
  }

  private runExec(job: PoolJob, spec: ExecSpec): void {
    const attempt = new AttemptSupervisor(job, this);
    this.attempts.set(job.key, attempt);
    const proc = new ExecProcess(spec, (outcome) => {
      if (this.attempts.get(job.key) === attempt) this.attempts.delete(job.key);
      attempt.finish(outcome);
    });
    attempt.started(proc);
    this.emit('started', job.key);
  }

  private spawn(): WorkerHost {
    const limit = this.opts.maxMessageBytes ? { maxMessageBytes: this.opts.maxMessageBytes } : {};
    const child =
      this.opts.isolation === 'thread'
        ? new ThreadHandle({ execArgv: this.opts.execArgv, ...limit, logger: this.log })
        : new ChildHandle({
            execArgv: this.opts.execArgv,
            orphanWatchdog: this.opts.orphanWatchdog,
            ...limit,
            logger: this.log,
          });
    this.children.push(child);
    child.on('message', (msg) => this.onMessage(child, msg));
    child.once('ready', () => {
      this.earlyDeaths = 0;
    });
    child.once('exit', (exit) => this.onExit(child, exit));
    const queued = this.waiting;
    this.waiting = [];
    for (const job of queued) this.run(job);
    return child;
  }

  private onMessage(child: WorkerHost, msg: ToParent): void {
    if (msg.cmd === ParentCommand.Ready || msg.cmd === ParentCommand.Fatal) return;
    // The handle passes on only reports about attempts its own process holds (child-handle.ts), so an
    // attempt is started, advanced and settled only by the child it was handed to.
    const a = msg.key === undefined ? undefined : this.attempts.get(msg.key);
    switch (msg.cmd) {
      case ParentCommand.Log: {
        const log = a ? this.log.child({ taskId: a.job.task.id, attempt: a.job.task.attempt }) : this.log;
        log.log(msg.level, msg.message, { ...msg.meta, pid: child.pid });
        return;
      }
      case ParentCommand.Started:
        if (a?.live) this.emit('started', msg.key);
        return;
      case ParentCommand.Progress:
        if (a?.live) this.emit('progress', msg.key, Math.min(1, Math.max(0, msg.progress)));
        return;
      case ParentCommand.Add: {
        const req = msg.batch ? { tasks: msg.tasks, batch: msg.batch } : { tasks: msg.tasks };
        this.emit('add', msg.key, req, (reply) => child.alive && child.replyAdd(msg.reqId, reply));
        return;
      }
      case ParentCommand.Completed:
      case ParentCommand.Failed: {
        this.checkLimits(child, msg.rss);
        if (!a) return;
        this.attempts.delete(msg.key);
        a.finish(
          msg.cmd === ParentCommand.Completed
            ? { ok: true, result: msg.result, ...(msg.bytes === undefined ? {} : { bytes: msg.bytes }) }
            : { ok: false, error: msg.error, ...(msg.unrecoverable ? { unrecoverable: true } : {}) },
        );
        if (child.retiring && child.load === 0) void child.stop(this.opts.killGraceMs);
        return;
      }
    }
  }

  /** Retires `child` if it has reached a recycling limit. */
  private checkLimits(child: WorkerHost, rss: number | undefined): void {
    if (child.retiring || this.closed) return;
    const { maxTasksPerWorker: maxTasks, maxWorkerMemoryMb: maxMb } = this.opts;
    let reason: string | undefined;
    if (maxTasks && child.finished >= maxTasks) reason = `finished ${child.finished} tasks`;
    else if (maxMb && rss !== undefined && rss > maxMb * 1024 * 1024)
      reason = `resident memory ${Math.round(rss / (1024 * 1024))} MB is over ${maxMb} MB`;
    if (!reason) return;
    child.retire(reason);
    // The replacement is forked now rather than when the old child exits: a retiring child may still
    // be finishing a long attempt, and the pool should not run a worker short meanwhile.
    const fresh = this.spawn();
    this.log.info(`recycling worker ${child.kind}`, {
      pid: child.pid,
      worker: child.id,
      reason,
      replacement: fresh.pid ?? fresh.id,
    });
    this.emit('recycle', child.pid, fresh.pid, reason);
  }

  private onExit(child: WorkerHost, exit: ChildExit): void {
    this.children = this.children.filter((c) => c !== child);
    // Already replaced when it was retired; only a crash while finishing its last attempts is news.
    if (child.retiring && exit.keys.length === 0) return;
    const what = `worker ${child.kind}`;
    const how = child.killedFor
      ? `${what} killed: ${child.killedFor}`
      : exit.fatal
        ? `${what} died: ${exit.fatal.message}`
        : `${what} exited (${exit.signal ? `signal ${exit.signal}` : `code ${exit.code}`}) while running the task`;
    for (const key of exit.keys) {
      const a = this.attempts.get(key);
      if (!a) continue;
      this.attempts.delete(key);
      a.finish({ ok: false, error: wireError('ECRASH', how) });
    }
    if (this.closed || child.retiring) return;
    this.log.warn(`worker ${child.kind} died; replacing it`, {
      pid: child.pid,
      worker: child.id,
      code: exit.code,
      signal: exit.signal,
      tasks: exit.keys.length,
      error: exit.fatal?.message,
    });
    // A child that dies before it is even ready points at the installation, not at a task: back off
    // instead of forking in a tight loop.
    const delay = exit.early ? backoffDelay(this.earlyDeaths++, { base: 200, cap: 10_000 }) : 0;
    this.missing++;
    if (!delay) this.respawn();
    else this.respawnTimer ??= setTimeout(() => this.respawn(), delay);
  }

  private respawn(): void {
    if (this.respawnTimer) clearTimeout(this.respawnTimer);
    this.respawnTimer = null;
    for (; this.missing > 0 && !this.closed; this.missing--) this.emit('respawn', this.spawn().pid);
  }
}

function whenReady(child: WorkerHost): Promise<void> {
  if (child.ready) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const onExit = (exit: ChildExit) => {
      child.off('ready', onReady);
      const why = exit.fatal ? `: ${exit.fatal.message}` : '';
      reject(
        new Error(
          `worker ${child.kind} exited during start-up (${exit.signal ?? `code ${exit.code}`})${why}`,
        ),
      );
    };
    const onReady = () => {
      child.off('exit', onExit);
      resolve();
    };
    child.once('ready', onReady);
    child.once('exit', onExit);
  });
}

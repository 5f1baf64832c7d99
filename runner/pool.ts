/**
 * The child-process pool (after BullMQ's sandbox pool): `workers` children, each running as many
 * attempts as it is given. An attempt goes to the child with the fewest attempts in hand, so async
 * tasks overlap while CPU-bound ones spread over the processes.
 *
 * A child that dies is replaced, never reused, and every attempt it held fails with ECRASH (the
 * master retries it). A cancelled or timed-out attempt gets its AbortSignal fired; if it has not let
 * go after `killGraceMs` the whole child is killed, because a spinning task cannot be stopped any
 * other way. Its neighbours then fail with ECRASH too: a retry is cheaper than a stuck slot.
 *
 * Recycling (`maxTasksPerWorker`, `maxWorkerMemoryMb`): a child past either limit is retired. It takes
 * no new attempt, finishes those it holds, and is then stopped; nothing it runs fails because of it.
 *
 * Built-in `exec` attempts run a program straight from here, not in a child (see exec-task.ts); they
 * share the timeout, cancel and settled reporting of the others.
 */
import { EventEmitter } from 'node:events';
import { backoffDelay } from '../common/backoff';
import type { Logger } from '../common/logger';
import { wireError, type ReportedError } from '../protocol/errors';
import type { AddReply } from '../protocol/schemas';
import { ChildHandle, type ChildExit } from './child-handle';
import { ExecProcess, type ExecSpec } from './exec-task';
import type { LoadedModule } from './loader';
import { ParentCommand, type TaskPayload, type ToParent } from './sandbox-messages';

/** An attempt of a task module (run in a child), or of the built-in `exec` (run here). */
export type PoolJob = {
  key: string;
  task: TaskPayload;
  /** Milliseconds from dispatch before the attempt fails with ETO. */
  runTimeout?: number;
} & ({ module: LoadedModule } | { exec: ExecSpec });

export type JobOutcome =
  { ok: true; result: unknown } | { ok: false; error: ReportedError; unrecoverable?: boolean };

export interface PoolOptions {
  workers: number;
  killGraceMs: number;
  execArgv: string[];
  orphanWatchdog: boolean;
  /** Retire a child once it has finished this many attempts. Default: never. */
  maxTasksPerWorker?: number;
  /** Retire a child whose resident set, measured as each attempt settles, exceeds this. Default: never. */
  maxWorkerMemoryMb?: number;
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

interface JobState {
  job: PoolJob;
  child: ChildHandle;
  /** Cancelled or timed out: nothing more is reported, we only wait for the child to let go. */
  abandoned: boolean;
  timer: NodeJS.Timeout | null;
}

interface ExecState {
  job: PoolJob;
  proc: ExecProcess | null;
  abandoned: boolean;
  timer: NodeJS.Timeout | null;
}

export class ChildPool extends EventEmitter<PoolEvents> {
  private children: ChildHandle[] = [];
  private jobs = new Map<string, JobState>();
  private execs = new Map<string, ExecState>();
  /** Jobs that arrived while no child was alive (all crashed at once and respawns are backing off). */
  private waiting: PoolJob[] = [];
  private earlyDeaths = 0;
  private respawnTimer: NodeJS.Timeout | null = null;
  /** Children that died and are not replaced yet. */
  private missing = 0;
  private closed = false;
  private readonly log: Logger;

  constructor(private readonly opts: PoolOptions) {
    super();
    this.log = opts.logger;
  }

  /** Forks the children and waits until each reports ready, so a broken install fails start-up. */
  async start(): Promise<void> {
    const spawned = Array.from({ length: this.opts.workers }, () => this.spawn());
    await Promise.all(spawned.map((c) => whenReady(c)));
  }

  /** Attempts being run (not counting cancelled ones still winding down). */
  runningKeys(): string[] {
    return [...this.jobs, ...this.execs].filter(([, s]) => !s.abandoned).map(([k]) => k);
  }

  /** Pids of the live children, for tests and diagnostics. */
  pids(): number[] {
    return this.children.filter((c) => c.alive && c.pid !== undefined).map((c) => c.pid as number);
  }

  has(key: string): boolean {
    const s = this.jobs.get(key) ?? this.execs.get(key);
    return !!s && !s.abandoned;
  }

  run(job: PoolJob): void {
    if (this.closed || this.jobs.has(job.key) || this.execs.has(job.key)) return;
    if ('exec' in job) return this.runExec(job, job.exec);
    let best: ChildHandle | undefined;
    // A child still holding an abandoned attempt may be stuck in it until the kill: avoid it if possible.
    for (const c of this.children) {
      if (!c.alive || c.retiring) continue;
      if (!best || c.abandoned < best.abandoned || (c.abandoned === best.abandoned && c.load < best.load))
        best = c;
    }
    if (!best) {
      this.waiting.push(job);
      return;
    }
    const state: JobState = { job, child: best, abandoned: false, timer: null };
    this.jobs.set(job.key, state);
    if (job.runTimeout && job.runTimeout > 0) {
      state.timer = setTimeout(() => this.timeout(job.key), job.runTimeout);
    }
    best.start(job.key, job.task, job.module);
  }

  /** Stops an attempt without reporting it (the master cancelled or reassigned it). */
  cancel(key: string, reason = 'cancelled'): void {
    const waitingAt = this.waiting.findIndex((j) => j.key === key);
    if (waitingAt >= 0) this.waiting.splice(waitingAt, 1);
    const e = this.execs.get(key);
    if (e) return this.stopExec(e);
    this.abandon(key, wireError('ECANCELLED', reason));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.waiting = [];
    if (this.respawnTimer) clearTimeout(this.respawnTimer);
    for (const s of this.jobs.values()) if (s.timer) clearTimeout(s.timer);
    this.jobs.clear();
    const execs = [...this.execs.values()];
    for (const e of execs) this.stopExec(e);
    await Promise.all([
      ...this.children.map((c) => c.stop(this.opts.killGraceMs)),
      ...execs.map((e) => e.proc?.stop(this.opts.killGraceMs)),
    ]);
    this.children = [];
  }

  private timeout(key: string): void {
    const s = this.jobs.get(key) ?? this.execs.get(key);
    if (!s || s.abandoned) return;
    const error = wireError('ETO', `run timeout: the task ran longer than ${s.job.runTimeout} ms`);
    this.log.warn('task timed out', {
      taskId: s.job.task.id,
      attempt: s.job.task.attempt,
      runTimeout: s.job.runTimeout,
    });
    this.emit('settled', key, { ok: false, error });
    const e = this.execs.get(key);
    if (e) this.stopExec(e);
    else this.abandon(key, error);
  }

  private runExec(job: PoolJob, spec: ExecSpec): void {
    const state: ExecState = { job, proc: null, abandoned: false, timer: null };
    this.execs.set(job.key, state);
    state.proc = new ExecProcess(spec, (outcome) => {
      if (this.execs.get(job.key) === state) this.execs.delete(job.key);
      if (state.timer) clearTimeout(state.timer);
      if (!state.abandoned) this.emit('settled', job.key, outcome);
    });
    if (job.runTimeout && job.runTimeout > 0)
      state.timer = setTimeout(() => this.timeout(job.key), job.runTimeout);
    this.emit('started', job.key);
  }

  /** Nothing more is reported for the attempt; its program gets SIGTERM, then SIGKILL after the grace. */
  private stopExec(state: ExecState): void {
    state.abandoned = true;
    if (state.timer) clearTimeout(state.timer);
    state.timer = null;
    void state.proc?.stop(this.opts.killGraceMs);
  }

  private abandon(key: string, error: ReportedError): void {
    const s = this.jobs.get(key);
    if (!s || s.abandoned) return;
    s.abandoned = true;
    s.child.abandoned++;
    if (s.timer) clearTimeout(s.timer);
    s.child.cancel(key, error);
    s.timer = setTimeout(() => {
      if (!s.child.keys.has(key)) return;
      this.log.warn('task did not stop after its abort signal; killing its worker process', {
        taskId: s.job.task.id,
        attempt: s.job.task.attempt,
        pid: s.child.pid,
      });
      s.child.killedFor ??= `task ${s.job.task.id} (attempt ${s.job.task.attempt}) did not stop after ${error.code}`;
      s.child.kill('SIGKILL');
    }, this.opts.killGraceMs);
  }

  private spawn(): ChildHandle {
    const child = new ChildHandle({
      execArgv: this.opts.execArgv,
      orphanWatchdog: this.opts.orphanWatchdog,
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

  private onMessage(child: ChildHandle, msg: ToParent): void {
    if (msg.cmd === ParentCommand.Ready || msg.cmd === ParentCommand.Fatal) return;
    const s = msg.key === undefined ? undefined : this.jobs.get(msg.key);
    const log = s ? this.log.child({ taskId: s.job.task.id, attempt: s.job.task.attempt }) : this.log;
    switch (msg.cmd) {
      case ParentCommand.Log:
        log.log(msg.level, msg.message, { ...msg.meta, pid: child.pid });
        return;
      case ParentCommand.Started:
        if (s && !s.abandoned) this.emit('started', msg.key);
        return;
      case ParentCommand.Progress:
        if (s && !s.abandoned) this.emit('progress', msg.key, msg.progress);
        return;
      case ParentCommand.Add: {
        const req = msg.batch ? { tasks: msg.tasks, batch: msg.batch } : { tasks: msg.tasks };
        this.emit('add', msg.key, req, (reply) => child.alive && child.replyAdd(msg.reqId, reply));
        return;
      }
      case ParentCommand.Completed:
      case ParentCommand.Failed: {
        // The verdict on the child comes first, so a job queued by a 'settled' listener avoids it.
        this.checkLimits(child, msg.rss);
        if (!s) return;
        this.jobs.delete(msg.key);
        if (s.timer) clearTimeout(s.timer);
        if (s.abandoned) s.child.abandoned--;
        else {
          const outcome: JobOutcome =
            msg.cmd === ParentCommand.Completed
              ? { ok: true, result: msg.result }
              : { ok: false, error: msg.error, ...(msg.unrecoverable ? { unrecoverable: true } : {}) };
          this.emit('settled', msg.key, outcome);
        }
        if (child.retiring && child.load === 0) void child.stop(this.opts.killGraceMs);
        return;
      }
    }
  }

  /** Retires `child` if it has reached a recycling limit. */
  private checkLimits(child: ChildHandle, rss: number | undefined): void {
    if (child.retiring || this.closed) return;
    const { maxTasksPerWorker: maxTasks, maxWorkerMemoryMb: maxMb } = this.opts;
    let reason: string | undefined;
    if (maxTasks && child.finished >= maxTasks) reason = `finished ${child.finished} tasks`;
    else if (maxMb && rss !== undefined && rss > maxMb * 1024 * 1024)
      reason = `resident memory ${Math.round(rss / (1024 * 1024))} MB is over ${maxMb} MB`;
    if (!reason) return;
    child.retiring = reason;
    // The replacement is forked now rather than when the old child exits: a retiring child may still
    // be finishing a long attempt, and the pool should not run a worker short meanwhile.
    const fresh = this.spawn();
    this.log.info('recycling worker process', { pid: child.pid, reason, replacement: fresh.pid });
    this.emit('recycle', child.pid, fresh.pid, reason);
  }

  private onExit(child: ChildHandle, exit: ChildExit): void {
    this.children = this.children.filter((c) => c !== child);
    // Already replaced when it was retired; only a crash while finishing its last attempts is news.
    if (child.retiring && exit.keys.length === 0) return;
    const how = child.killedFor
      ? `worker process killed: ${child.killedFor}`
      : exit.fatal
        ? `worker process died: ${exit.fatal.message}`
        : `worker process exited (${exit.signal ? `signal ${exit.signal}` : `code ${exit.code}`}) while running the task`;
    for (const key of exit.keys) {
      const s = this.jobs.get(key);
      if (!s) continue;
      this.jobs.delete(key);
      if (s.timer) clearTimeout(s.timer);
      if (!s.abandoned) this.emit('settled', key, { ok: false, error: wireError('ECRASH', how) });
    }
    if (this.closed || child.retiring) return;
    this.log.warn('worker process died; replacing it', {
      pid: child.pid,
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

function whenReady(child: ChildHandle): Promise<void> {
  if (child.ready) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const onExit = (exit: ChildExit) => {
      child.off('ready', onReady);
      reject(new Error(`worker process exited during start-up (${exit.signal ?? `code ${exit.code}`})`));
    };
    const onReady = () => {
      child.off('exit', onExit);
      resolve();
    };
    child.once('ready', onReady);
    child.once('exit', onExit);
  });
}

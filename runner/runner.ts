/**
 * A runner: connects to the master, takes the attempts it is assigned, runs them in its child pool
 * with hot-loaded task modules, and reports every result until the master has acknowledged it.
 *
 *   const runner = new Runner({ master: url, tasks: ['tasks'], workers: 2, logger });
 *   await runner.start();   // resolves once the master acknowledged our hello
 *   ...
 *   await runner.close();
 *
 * An attempt is tracked from assignment to acknowledgement: `active` while it is being loaded or run,
 * then in the outbox. Both are announced as `running` in every hello, so after a reconnect the master
 * keeps them ours instead of retrying them elsewhere, and tells us which ones it gave away (`drop`).
 */
import { EventEmitter } from 'node:events';
import os from 'node:os';
import { z } from 'zod';
import type { Logger } from '../common/logger';
import { mastersText } from '../common/master-urls';
import { capError, fromThrown, wireError } from '../protocol/errors';
import type { AttemptRef, SysmsgReply } from '../protocol/events';
import {
  attemptRefSchema,
  assignmentSchema,
  cancelSchema,
  type Assignment,
  type AttemptResult,
  type Hello,
  type ModuleInfo,
} from '../protocol/schemas';
import { formatIssues, issueText } from '../protocol/issues';
import { ENVELOPE_BYTES, messageRoom } from '../protocol/limits';
import { resolveRunnerOptions, type ResolvedRunnerOptions } from './config';
import { MasterConnection } from './connection';
import { checkExec, EXEC_HASH, EXEC_MODULE, resolveAllowed } from './exec-task';
import { ModuleLoader, type LoadedModule } from './loader';
import type { RunnerOptions } from './options';
import { ResultOutbox } from './outbox';
import { ChildPool, type JobOutcome } from './pool';
import { attemptKey } from './sandbox-messages';
import { workerMessageLimit } from './worker-channel';

export interface RunnerEvents {
  /** The master acknowledged a hello (at start and after every reconnect). */
  ready: [drop: AttemptRef[]];
  disconnect: [reason: string];
  started: [ref: AttemptRef];
  /** An attempt finished here (before the master acknowledged it). */
  result: [result: AttemptResult];
  /** The master acknowledged these results. */
  delivered: [results: AttemptResult[]];
  modules: [modules: ModuleInfo[]];
  /** A child process was forked to replace one that died. */
  respawn: [pid: number | undefined];
  /** A system message from the master or another client. */
  sysmsg: [msg: unknown, from: string];
}

interface Active {
  assignment: Assignment;
  moduleHash?: string;
}

export class Runner extends EventEmitter<RunnerEvents> {
  readonly runnerId: string;
  readonly options: ResolvedRunnerOptions;
  private readonly log: Logger;
  private readonly loader: ModuleLoader;
  private readonly pool: ChildPool;
  private readonly outbox: ResultOutbox;
  private readonly conn: MasterConnection;
  private readonly active = new Map<string, Active>();
  /** Allowed exec programs, resolved to absolute paths at start-up. */
  private readonly execPaths: Map<string, string>;
  /** Batches are handled one after the other, so tasks reach the pool in the order the master sent them. */
  private assignQueue: Promise<void> = Promise.resolve();
  private startedRefs: AttemptRef[] = [];
  private starting: Promise<void> | null = null;
  private closing: Promise<void> | null = null;
  private drainWaiters = new Set<() => void>();
  /** Shutting down: no new work is taken. */
  private stopping = false;
  /** The warning that --max-result-bytes cannot be honoured was logged (once per runner). */
  private warnedLimit = false;
  /** Fails a start() still waiting for the master when close() is called. */
  private abortStart: ((err: Error) => void) | null = null;

  constructor(opts: RunnerOptions) {
    super();
    this.options = resolveRunnerOptions(opts);
    const o = this.options;
    this.runnerId = o.runnerId;
    this.log = o.logger.child({ role: 'runner', runnerId: this.runnerId });
    this.execPaths = resolveAllowed(o.allowExec);
    for (const name of o.allowExec)
      if (!this.execPaths.has(name))
        this.log.warn('allowed exec program not found; its tasks are refused', { name });
    this.loader = new ModuleLoader({
      dirs: o.tasks,
      watch: o.watch,
      stableMs: o.moduleStableMs,
      logger: this.log,
    });
    this.pool = new ChildPool({
      workers: o.workers,
      isolation: o.isolation,
      killGraceMs: o.killGraceMs,
      execArgv: o.execArgv,
      orphanWatchdog: o.orphanWatchdog,
      maxTasksPerWorker: o.maxTasksPerWorker,
      maxWorkerMemoryMb: o.maxWorkerMemoryMb,
      maxMessageBytes: () => workerMessageLimit(this.maxResultBytes),
      logger: this.log,
    });
    this.conn = new MasterConnection({
      master: o.master,
      token: o.token,
      ca: o.ca,
      ackTimeoutMs: o.ackTimeoutMs,
      reconnectDelayMs: o.reconnectDelayMs,
      reconnectDelayMaxMs: o.reconnectDelayMaxMs,
      logger: this.log,
      hello: () => this.hello(),
    });
    this.outbox = new ResultOutbox({
      threshold: o.answerThreshold,
      delayMs: o.answerDelayMs,
      logger: this.log,
      send: (results, started) => this.conn.results(results, started),
      maxBytes: () => messageRoom(this.conn.maxMessageBytes ?? Infinity),
    });
    this.wire();
  }

  /** Loads the task folders, forks the children and connects; resolves once the master acknowledged the hello. */
  start(): Promise<void> {
    this.starting ??= this.doStart().catch(async (err: unknown) => {
      await this.close();
      throw err;
    });
    return this.starting;
  }

  /** Stops the children (their attempts are abandoned; the master retries them) and disconnects. */
  close(): Promise<void> {
    this.closing ??= this.doClose();
    return this.closing;
  }

  /**
   * Graceful stop (SIGTERM/SIGINT): takes no new work, lets running tasks finish for up to `graceMs`,
   * then gives the unfinished attempts back to the master — which requeues them at once instead of
   * waiting for this runner's disconnect to time out — and closes.
   */
  async shutdown(graceMs = this.options.shutdownGraceMs): Promise<void> {
    if (this.closing) return this.closing;
    this.stopping = true;
    this.conn.draining();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.drain(), new Promise((r) => (timer = setTimeout(r, graceMs)))]);
    clearTimeout(timer);
    const left = this.running;
    if (left.length > 0) {
      const released = await this.conn.release(left).catch((err: unknown) => {
        this.log.warn('could not release unfinished attempts; the master retries them after the disconnect', {
          error: String(err),
        });
        return 0;
      });
      this.log.info('released unfinished attempts', { released, unfinished: left.length });
    }
    await this.close();
  }

  /** Resolves when nothing is running here and every result has been acknowledged (or on close). */
  drain(): Promise<void> {
    return new Promise((resolve) => {
      this.drainWaiters.add(resolve);
      this.checkDrained();
    });
  }

  /** Sends a system message to the master ('MASTER'), everybody (null, the default) or one client by id. */
  systemMessage(msg: unknown, to: string | null = null): Promise<SysmsgReply> {
    return this.conn.sysmsg(msg, to);
  }

  /** Attempts assigned here and not yet finished. */
  get running(): AttemptRef[] {
    return [...this.active.values()].map(({ assignment: a }) => ({ id: a.id, attempt: a.attempt }));
  }

  /** The master this runner is connected to, or is trying: one of its URLs, or the active master a standby named. */
  get master(): string {
    return this.conn.master;
  }

  /** The highest master epoch this runner has heard; assignments and cancels carrying an older one are refused. */
  get epoch(): number | undefined {
    return this.conn.epoch;
  }

  /** Pids of the live child processes. */
  get pids(): number[] {
    return this.pool.pids();
  }

  private async doStart(): Promise<void> {
    const o = this.options;
    await this.loader.start();
    await this.pool.start();
    this.log.info('runner starting', {
      master: o.master,
      workers: o.workers,
      slots: o.slots,
      tasks: o.tasks,
    });
    await new Promise<void>((resolve, reject) => {
      const timer = o.startTimeoutMs
        ? setTimeout(
            () => done(new Error(`${mastersText(o.master)} did not answer within ${o.startTimeoutMs} ms`)),
            o.startTimeoutMs,
          )
        : null;
      const done = (err?: Error) => {
        this.abortStart = null;
        if (timer) clearTimeout(timer);
        this.conn.off('ready', onReady);
        this.conn.off('refused', done);
        if (err) reject(err);
        else resolve();
      };
      const onReady = () => done();
      this.conn.once('ready', onReady);
      this.conn.once('refused', done);
      this.abortStart = done;
      this.conn.open();
    });
  }

  private async doClose(): Promise<void> {
    this.log.info('runner closing', { running: this.active.size, unacknowledged: this.outbox.size });
    this.abortStart?.(new Error('the runner was closed before the master answered'));
    this.active.clear();
    this.checkDrained();
    await Promise.all([this.loader.close(), this.pool.close()]);
    if (this.conn.isReady && this.outbox.size > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        this.outbox.idle(),
        new Promise((r) => (timer = setTimeout(r, this.options.closeTimeoutMs))),
      ]);
      clearTimeout(timer);
    }
    this.outbox.close();
    this.conn.close();
  }

  private hello(): Hello {
    const o = this.options;
    const running = new Map<string, AttemptRef>();
    for (const [key, a] of this.active)
      running.set(key, { id: a.assignment.id, attempt: a.assignment.attempt });
    for (const key of this.outbox.keys()) if (!running.has(key)) running.set(key, parseKey(key));
    return {
      runnerId: this.runnerId,
      hostname: os.hostname(),
      pid: process.pid,
      slots: o.slots,
      ...(o.prioritySlots ? { prioritySlots: o.prioritySlots } : {}),
      workers: o.workers,
      data: o.data,
      modules: this.announced(this.loader.modules()),
      running: [...running.values()],
    };
  }

  private wire(): void {
    this.conn.on('ready', (drop) => {
      const keys = drop.map((r) => attemptKey(r.id, r.attempt));
      for (const key of keys) this.abandon(key, 'the master gave this attempt to another runner');
      this.outbox.drop(keys);
      if (drop.length) this.log.warn('master dropped attempts held here', { drop });
      const own = this.options.maxResultBytes;
      const message = this.conn.maxMessageBytes;
      if (own !== undefined && message !== undefined && own > messageRoom(message) && !this.warnedLimit) {
        this.warnedLimit = true;
        this.log.warn(
          '--max-result-bytes is more than one message to the master carries: larger results fail with ETOOLARGE',
          {
            maxResultBytes: own,
            masterMaxMessageBytes: message,
            largestResult: messageRoom(message),
          },
        );
      }
      this.outbox.setOnline(true);
      this.conn.modules(this.announced(this.loader.modules()));
      this.emit('ready', drop);
    });
    this.conn.on('down', (reason) => {
      this.outbox.setOnline(false);
      this.emit('disconnect', reason);
    });
    this.conn.on('assign', (payload) => this.onAssign(payload));
    this.conn.on('sysmsg', (msg, from) => this.emit('sysmsg', msg, from));
    this.conn.on('cancel', (payload) => this.onCancel(payload));

    this.pool.on('started', (key) => {
      const a = this.active.get(key)?.assignment;
      if (!a) return;
      const ref = { id: a.id, attempt: a.attempt };
      this.emit('started', ref);
      // One task:started per tick for all attempts that began in it.
      if (this.startedRefs.push(ref) === 1) setImmediate(() => this.reportStarted());
    });
    this.pool.on('settled', (key, outcome) => this.settle(key, outcome));
    this.pool.on('progress', (key, progress) => {
      const a = this.active.get(key)?.assignment;
      if (a) this.conn.progress({ id: a.id, attempt: a.attempt, progress });
    });
    this.pool.on('add', (key, req, reply) => {
      this.conn
        .add(req)
        .then(reply, (err: unknown) =>
          reply({ ok: false, error: wireError('ETASK', `adding tasks failed: ${(err as Error).message}`) }),
        );
    });
    this.pool.on('respawn', (pid) => this.emit('respawn', pid));

    this.outbox.on('delivered', (results) => this.emit('delivered', results));
    this.outbox.on('empty', () => this.checkDrained());
    this.loader.on('modules', (list) => {
      const modules = this.announced(list);
      this.log.info('task modules changed', { modules: modules.length });
      this.conn.modules(modules);
      this.emit('modules', modules);
    });
  }

  /**
   * The modules this runner announces, which are the only ones the master sends it: those of its task
   * folders with a good version, and the built-in `exec` when it allows programs (a task-folder module
   * of that name is never loaded, so it is not announced).
   */
  private announced(list: ModuleInfo[]): ModuleInfo[] {
    const own = list.filter((m) => m.name !== EXEC_MODULE);
    return this.execPaths.size > 0 ? [...own, { name: EXEC_MODULE, hash: EXEC_HASH }] : own;
  }

  private onAssign(payload: unknown): void {
    if (this.closing) return;
    const parsed = assignEnvelope.safeParse(payload);
    if (!parsed.success) {
      return void this.log.warn('malformed task:assign ignored', {
        issues: formatIssues(parsed.error.issues, 'assign'),
      });
    }
    // An entry without an id and attempt cannot even fail on its own (its result would name
    // nothing): it alone is left out, with its field and reason; the others are taken.
    const items: z.infer<typeof assignedAttempt>[] = [];
    parsed.data.tasks.forEach((raw, i) => {
      const ref = assignedAttempt.safeParse(raw);
      if (ref.success) return void items.push(ref.data);
      this.log.warn('malformed task:assign entry ignored', {
        issues: formatIssues(ref.error.issues, `assign.tasks[${i}]`),
      });
    });
    if (this.stopping) {
      // Sent before the master heard we are draining: hand it straight back.
      void this.conn.release(items.map((a) => ({ id: a.id, attempt: a.attempt }))).catch(() => 0);
      return;
    }
    const fresh: [string, Assignment][] = [];
    for (const item of items) {
      const key = attemptKey(item.id, item.attempt);
      const checked = assignmentSchema.safeParse(item);
      if (!checked.success) {
        // One assignment this runner refuses (a module name a master let by) fails on its own,
        // visibly, instead of the whole batch vanishing.
        if (this.active.has(key) || this.outbox.has(key)) continue;
        const issues = formatIssues(checked.error.issues, 'task');
        const code = issues.some((i) => i.path === 'task.module') ? 'EMODULE' : 'EVALIDATION';
        const message = issueText(issues);
        this.active.set(key, { assignment: { ...item, module: '', params: [], priority: 0 } });
        this.settle(key, {
          ok: false,
          error: wireError(code, `refused by the runner: ${message}`),
          unrecoverable: true,
        });
        continue;
      }
      const a = checked.data;
      if (this.active.has(key) || this.outbox.has(key)) {
        this.log.warn('duplicate assignment ignored', { taskId: a.id, attempt: a.attempt });
        continue;
      }
      this.active.set(key, { assignment: a });
      fresh.push([key, a]);
    }
    this.assignQueue = this.assignQueue.then(() => this.dispatch(fresh));
  }

  /** Resolves each module once per batch (which also picks up edits), then hands the attempts to the pool. */
  private async dispatch(batch: [string, Assignment][]): Promise<void> {
    // The built-in `exec` is never looked up in the task folders: it wins over a module of that name.
    const names = [...new Set(batch.map(([, a]) => a.module))].filter((n) => n !== EXEC_MODULE);
    const loaded = await Promise.allSettled(names.map((n) => this.loader.resolve(n)));
    const byName = new Map<string, PromiseSettledResult<LoadedModule>>(names.map((n, i) => [n, loaded[i]]));
    for (const [key, a] of batch) {
      const entry = this.active.get(key);
      if (!entry || this.closing) continue; // cancelled while its module was loading
      const task = {
        id: a.id,
        attempt: a.attempt,
        module: a.module,
        params: a.params,
        priority: a.priority,
        batch: a.batch,
        ...(a.dependencies ? { dependencies: a.dependencies } : {}),
        ...(a.maxDependencyBytes !== undefined ? { maxDependencyBytes: a.maxDependencyBytes } : {}),
      };
      if (a.module === EXEC_MODULE) {
        const checked = checkExec(a.params, this.options.allowExec, this.execPaths);
        if (!checked.ok) this.settle(key, { ok: false, error: checked.error, unrecoverable: true });
        else this.pool.run({ key, task, exec: checked.spec, runTimeout: a.runTimeout });
        continue;
      }
      const mod = byName.get(a.module);
      if (!mod || mod.status === 'rejected') {
        this.settle(key, { ok: false, error: fromThrown(mod?.reason, 'EMODULE'), unrecoverable: true });
        continue;
      }
      entry.moduleHash = mod.value.hash;
      this.pool.run({ key, task, module: mod.value, runTimeout: a.runTimeout });
    }
  }

  private settle(key: string, outcome: JobOutcome): void {
    const entry = this.active.get(key);
    if (!entry) return;
    this.active.delete(key);
    const { id, attempt } = entry.assignment;
    const moduleHash = entry.moduleHash ? { moduleHash: entry.moduleHash } : {};
    if (outcome.ok) outcome = this.checkSize(outcome);
    const result: AttemptResult = outcome.ok
      ? { id, attempt, ok: true, result: outcome.result, ...moduleHash }
      : {
          id,
          attempt,
          ok: false,
          // Cut to what an outcome carries: a huge error must not make the message too large to send.
          error: capError(outcome.error),
          ...(outcome.unrecoverable ? { unrecoverable: true } : {}),
          ...moduleHash,
        };
    const log = this.log.child({ taskId: id, attempt });
    if (result.ok) log.debug('task done');
    else log.info('task failed', { code: result.error.code, error: result.error.message });
    this.emit('result', result);
    if (!this.closing) this.outbox.push(key, result);
  }

  /**
   * Sends the starts of this tick's attempts in one `task:started`, less those whose result is already
   * waiting in the outbox: that result carries the start (one message per task fewer when tasks are
   * short). The outbox's flush was scheduled after this one, so it goes out right behind.
   */
  private reportStarted(): void {
    const refs = this.startedRefs;
    this.startedRefs = [];
    this.conn.started(refs.filter((r) => !this.outbox.carryStarted(attemptKey(r.id, r.attempt))));
  }

  /** Largest result this runner may send: its own limit if set, at most what one message carries. */
  get maxResultBytes(): number {
    const message = this.conn.maxMessageBytes;
    const own = this.options.maxResultBytes ?? Infinity;
    return message === undefined ? own : Math.min(own, messageRoom(message));
  }

  /**
   * A result over the limit would be refused by the transport, and the runner would reconnect and
   * resend it forever: it fails its attempt instead (ETOOLARGE, not retried, as it would be as large).
   * The message names the setting that limits it.
   */
  private checkSize(outcome: JobOutcome & { ok: true }): JobOutcome {
    const limit = this.maxResultBytes;
    let bytes: number;
    try {
      bytes = outcome.bytes ?? Buffer.byteLength(JSON.stringify(outcome.result) ?? '');
    } catch (err) {
      const error = wireError('ETASK', `the result is not JSON-serialisable: ${(err as Error).message}`);
      return { ok: false, error, unrecoverable: true };
    }
    if (bytes <= limit) return outcome;
    const error = wireError('ETOOLARGE', `the result is ${bytes} bytes, over ${this.limitText()}`, {
      bytes,
      limit,
    });
    return { ok: false, error, unrecoverable: true };
  }

  /** Which setting bounds a result, in words: the runner's own, or the master's message limit. */
  private limitText(): string {
    const own = this.options.maxResultBytes;
    const message = this.conn.maxMessageBytes;
    if (message === undefined || (own !== undefined && own <= messageRoom(message)))
      return `the runner's --max-result-bytes of ${own} bytes`;
    const which =
      own === undefined ? '' : ` (the runner's --max-result-bytes ${own} is larger, but cannot pass)`;
    return (
      `the ${messageRoom(message)} bytes one message to the master carries: its --max-message-bytes ` +
      `${message} less ${ENVELOPE_BYTES} bytes of envelope${which}. Raise the master's --max-message-bytes, ` +
      'or return a reference to the data (a file, an object store key) instead'
    );
  }

  private checkDrained(): void {
    if (this.drainWaiters.size === 0) return;
    if (!this.closing && (this.active.size > 0 || this.outbox.size > 0)) return;
    for (const resolve of this.drainWaiters) resolve();
    this.drainWaiters.clear();
  }

  /**
   * A `task:cancel` of one or many attempts. Each is checked on its own: a malformed entry is ignored
   * with a warning naming it and why, and the others are still stopped.
   */
  private onCancel(payload: unknown): void {
    const parsed = cancelEnvelope.safeParse(payload);
    if (!parsed.success)
      return void this.log.warn('malformed task:cancel ignored', {
        issues: formatIssues(parsed.error.issues, 'cancel'),
      });
    const { tasks, reason } = parsed.data;
    tasks.forEach((item, i) => {
      const ref = attemptRefSchema.safeParse(item);
      if (ref.success) return this.abandon(attemptKey(ref.data.id, ref.data.attempt), reason);
      this.log.warn('malformed task:cancel entry ignored', {
        issues: formatIssues(ref.error.issues, `cancel.tasks[${i}]`),
      });
    });
  }

  /** Stops an attempt without reporting a result (cancelled, or no longer ours). */
  private abandon(key: string, reason: string): void {
    if (!this.active.delete(key)) return;
    this.checkDrained();
    const { id, attempt } = parseKey(key);
    this.log.info('attempt abandoned', { taskId: id, attempt, reason });
    this.pool.cancel(key, reason);
  }
}

/** The envelope of `task:cancel`; each attempt is checked on its own. */
const cancelEnvelope = cancelSchema.extend({ tasks: z.array(z.unknown()) });

/** The envelope of `task:assign`; each assignment is checked on its own. */
const assignEnvelope = z.object({ tasks: z.array(z.unknown()).min(1) });
/** What an assignment needs before anything else: the attempt it is, to report on. */
const assignedAttempt = z.looseObject({ id: z.string(), attempt: z.number().int().positive() });

function parseKey(key: string): AttemptRef {
  const at = key.lastIndexOf('#');
  return { id: key.slice(0, at), attempt: Number(key.slice(at + 1)) };
}

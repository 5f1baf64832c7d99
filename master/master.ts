/**
 * The master process: Socket.IO namespaces for runners (/runner), feeders (/feeder) and the original
 * protocol (/), a small HTTP API beside them, the scheduler and its write-through store.
 * Every payload received is parsed with its zod schema before it reaches the scheduler; a refused
 * request gets an error naming the field and the reason, and nothing else is disturbed.
 */
import { EventEmitter } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Connection } from 'mongoose';
import { Server, type Socket } from 'socket.io';
import { silentLogger, type Logger } from '../common/logger';
import { wireError } from '../protocol/errors';
import {
  ACK_TIMEOUT_MS,
  NAMESPACES,
  type SysmsgReply,
  type FeederToMaster,
  type MasterToFeeder,
  type MasterToRunner,
  type RunnerToMaster,
} from '../protocol/events';
import {
  addRequestSchema,
  cancelRequestSchema,
  formatIssues,
  sysmsgRequestSchema,
  helloSchema,
  modulesUpdateSchema,
  progressSchema,
  resultsSchema,
  startedSchema,
  watchRequestSchema,
  type AddReply,
  type TaskOutcome,
} from '../protocol/schemas';
import { connectDatabase } from '../models/connection';
import { startAnnouncer } from './announcer';
import { tokenMiddleware } from './auth';
import { serveHttp } from './http';
import { serveLegacy } from './legacy';
import { MASTER_DEFAULTS, type MasterDefaults, type MasterOptions } from './options';
import { describeRunner, slotPlan, type RunnerEntry } from './runner-registry';
import { Scheduler } from './scheduler';
import { Retention, type PurgeFilter } from './retention';
import { Store } from './store';
import { summarize } from './validate';

type RunnerSocket = Socket<RunnerToMaster, MasterToRunner>;
type FeederSocket = Socket<FeederToMaster, MasterToFeeder>;

export class Master extends EventEmitter {
  readonly opts: MasterOptions & MasterDefaults;
  readonly logger: Logger;
  private conn: Connection | null = null;
  private store: Store | null = null;
  private retention: Retention | null = null;
  private sched: Scheduler | null = null;
  private server: http.Server | null = null;
  private io: Server | null = null;
  /** Feeder sockets watching each task id. */
  private watchers = new Map<string, Set<FeederSocket>>();
  private starting: Promise<void> | null = null;
  private announcer: { stop(): void } | null = null;
  private closing: Promise<void> | null = null;

  constructor(opts: MasterOptions) {
    super();
    this.opts = { ...MASTER_DEFAULTS, ...stripUndefined(opts) } as MasterOptions & MasterDefaults;
    this.logger = (opts.logger ?? silentLogger()).child({ role: 'master' });
  }

  /** The shared secret, for the HTTP API's check. */
  get token(): string | undefined {
    return this.opts.token;
  }

  get scheduler(): Scheduler {
    if (!this.sched) throw new Error('master not started');
    return this.sched;
  }

  get port(): number {
    return (this.server?.address() as AddressInfo | null)?.port ?? this.opts.port;
  }

  get url(): string {
    const host = this.opts.host === '0.0.0.0' || this.opts.host === '::' ? '127.0.0.1' : this.opts.host;
    return `http://${host.includes(':') ? `[${host}]` : host}:${this.port}`;
  }

  start(): Promise<void> {
    this.starting ??= this.doStart();
    return this.starting;
  }

  private async doStart(): Promise<void> {
    this.conn = await connectDatabase(this.opts.mongoUrl, { dbName: this.opts.dbName });
    this.store = new Store(this.conn, {
      writeChunk: this.opts.writeChunk,
      foldBacklogLimit: this.opts.foldBacklogLimit,
      logger: this.logger,
    });
    const sched = new Scheduler(this.store, {
      maxAttempts: this.opts.maxAttempts,
      recoveryGraceMs: this.opts.recoveryGraceMs,
      disconnectGraceMs: this.opts.disconnectGraceMs,
      finalCacheSize: 100_000,
      selectRunner: this.opts.selectRunner,
      queueLimit: this.opts.queueLimit,
      holdSimilarWork: this.opts.holdSimilarWork,
      retryBackoff: this.opts.retryBackoff,
      timeoutSweepMs: this.opts.timeoutSweepMs,
      distributeDelayMs: this.opts.distributeDelayMs,
      allocate: this.opts.allocate,
      logger: this.logger,
    });
    this.sched = sched;
    sched.on('outcomes', (outcomes) => this.deliver(outcomes));
    sched.on('assigntimeout', (o) => this.emit('assigntimeout', o));
    const recovered = await sched.recover();
    if (recovered.tasks > 0 || recovered.dropped > 0)
      this.logger.info('recovered tasks from the database', {
        open: recovered.tasks,
        orphans: recovered.orphans,
        droppedUnacknowledged: recovered.dropped,
      });
    this.retention = new Retention(
      this.store,
      { retainMs: this.opts.retainMs, retainCount: this.opts.retainCount, logger: this.logger },
      (ids) => sched.forgetFinals(ids),
      (id) => sched.tasks.has(id),
    );
    this.retention.start();

    this.server = http.createServer((req, res) => serveHttp(req, res, this));
    this.io = new Server(this.server, {
      // Fast failure detection: a silent runner is noticed within ~10 s, a closed socket at once.
      pingInterval: 5000,
      pingTimeout: 5000,
      maxHttpBufferSize: 64 * 1024 * 1024,
      cors: { origin: false },
    });
    const auth = tokenMiddleware(this.opts.token);
    const runners = this.io.of(NAMESPACES.runner);
    const feeders = this.io.of(NAMESPACES.feeder);
    const legacy = this.io.of(NAMESPACES.legacy);
    for (const nsp of [runners, feeders, legacy]) nsp.use(auth);
    runners.on('connection', (s) => this.onRunner(s as RunnerSocket));
    feeders.on('connection', (s) => this.onFeeder(s as FeederSocket));
    serveLegacy(legacy, sched, this.logger);

    await new Promise<void>((resolve, reject) => {
      const server = this.server as http.Server;
      server.once('error', reject);
      server.listen(this.opts.port, this.opts.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.logger.info('master listening', { url: this.url });
    if (this.opts.announce) {
      this.announcer = startAnnouncer({
        ...this.opts.announce,
        url: this.url,
        id: `${process.pid}@${this.url}`,
        logger: this.logger,
      });
    }
  }

  // ---- runners ---------------------------------------------------------------------------------

  private onRunner(socket: RunnerSocket): void {
    let runnerId: string | null = null;
    let mine: RunnerEntry | null = null;
    const log = this.logger.child({ socket: socket.id });

    socket.on('runner:hello', (payload, ack) => {
      const parsed = helloSchema.safeParse(payload);
      if (!parsed.success) {
        const issues = formatIssues(parsed.error.issues, 'hello');
        return safeAck(ack, { ok: false, error: wireError('EVALIDATION', summarize(issues), { issues }) });
      }
      const h = parsed.data;
      runnerId = h.runnerId;
      const entry: RunnerEntry = {
        id: h.runnerId,
        hostname: h.hostname,
        pid: h.pid,
        slots: h.slots,
        workers: h.workers,
        data: h.data,
        modules: h.modules,
        active: new Set(),
        prioritySlots: h.prioritySlots,
        ...slotPlan(h.slots, h.prioritySlots, this.opts.sacredGuarantees === true),
        connected: true,
        legacy: false,
        since: Date.now(),
        lostTimer: null,
        send: (tasks) => socket.emit('task:assign', { tasks }),
        cancel: (tasks, reason) => socket.emit('task:cancel', { tasks, reason }),
      };
      mine = entry;
      socket.data = { runnerId: h.runnerId };
      const drop = this.scheduler.runnerUp(entry, h.running);
      log.info('runner ready', {
        runnerId: h.runnerId,
        slots: h.slots,
        workers: h.workers,
        holding: h.running.length,
      });
      safeAck(ack, { ok: true, runnerId: h.runnerId, drop });
      this.emit('runner:up', h.runnerId);
    });

    socket.on('task:started', (payload) => {
      const parsed = startedSchema.safeParse(payload);
      if (!parsed.success || !runnerId) return void log.warn('malformed task:started ignored');
      this.scheduler.started(runnerId, parsed.data.tasks);
      this.emit('task:started', runnerId, parsed.data.tasks);
    });

    socket.on('task:results', (payload, ack) => {
      const parsed = resultsSchema.safeParse(payload);
      if (!parsed.success || !runnerId) {
        log.warn('malformed task:results refused', {
          issues: parsed.error ? formatIssues(parsed.error.issues) : 'no hello',
        });
        return safeAck(ack, { ok: false, accepted: 0, stale: 0 });
      }
      void this.scheduler.results(runnerId, parsed.data.results).then(
        (r) => safeAck(ack, { ok: true, ...r }),
        (err: unknown) => log.error('applying results failed', { error: String(err) }),
      );
    });

    socket.on('task:progress', (payload) => {
      const parsed = progressSchema.safeParse(payload);
      if (!parsed.success) return;
      for (const f of this.watchers.get(parsed.data.id) ?? []) f.emit('task:progress', parsed.data);
    });

    socket.on('runner:draining', () => {
      const r = runnerId ? this.scheduler.runners.get(runnerId) : undefined;
      if (r) r.draining = true;
      log.info('runner draining', { runnerId });
    });

    socket.on('task:release', (payload, ack) => {
      const parsed = startedSchema.safeParse(payload);
      if (!parsed.success || !runnerId) return safeAck(ack, { ok: false, released: 0 });
      const released = this.scheduler.release(runnerId, parsed.data.tasks);
      log.info('attempts released by their runner', { runnerId, released });
      void this.scheduler.flushed().then(() => safeAck(ack, { ok: true, released }));
    });

    socket.on('runner:modules', (payload) => {
      const parsed = modulesUpdateSchema.safeParse(payload);
      const r = runnerId ? this.scheduler.runners.get(runnerId) : undefined;
      if (parsed.success && r) r.modules = parsed.data.modules;
    });

    socket.on('tasks:add', (payload, ack) => {
      void this.handleAdd(payload, null).then((reply) => safeAck(ack, reply));
    });

    socket.on('sysmsg:send', (payload, ack) => {
      void this.systemMessage(payload, runnerId ?? socket.id).then((reply) => safeAck(ack, reply));
    });

    socket.on('disconnect', (reason) => {
      if (!runnerId) return;
      // A newer connection of the same runner may already have replaced this one.
      if (this.scheduler.runners.get(runnerId) !== mine) return;
      log.info('runner disconnected', { runnerId, reason });
      this.scheduler.runnerDown(runnerId);
      this.emit('runner:down', runnerId);
    });
  }

  // ---- feeders ---------------------------------------------------------------------------------

  private onFeeder(socket: FeederSocket): void {
    const watched = new Set<string>();
    socket.data = { watched };

    socket.on('tasks:add', (payload, ack) => {
      void this.handleAdd(payload, socket).then((reply) => {
        safeAck(ack, reply);
        this.sendEarly(socket, reply);
      });
    });

    socket.on('tasks:watch', (payload, ack) => {
      const parsed = watchRequestSchema.safeParse(payload);
      if (!parsed.success) {
        const issues = formatIssues(parsed.error.issues);
        return safeAck(ack, { ok: false, error: wireError('EVALIDATION', summarize(issues), { issues }) });
      }
      for (const id of parsed.data.ids) this.watch(socket, id);
      void this.scheduler.lookup(parsed.data.ids).then(
        (r) => {
          for (const o of r.outcomes) this.unwatch(socket, o.id);
          for (const id of r.unknown) this.unwatch(socket, id);
          safeAck(ack, { ok: true, outcomes: r.outcomes, unknown: r.unknown });
        },
        (err: unknown) => safeAck(ack, { ok: false, error: wireError('EUNKNOWN', String(err)) }),
      );
    });

    socket.on('tasks:cancel', (payload, ack) => {
      const parsed = cancelRequestSchema.safeParse(payload);
      if (!parsed.success) {
        const issues = formatIssues(parsed.error.issues);
        return safeAck(ack, { ok: false, error: wireError('EVALIDATION', summarize(issues), { issues }) });
      }
      const cancelled = this.scheduler.cancel(parsed.data.ids, parsed.data.batch);
      safeAck(ack, { ok: true, cancelled });
    });

    socket.on('sysmsg:send', (payload, ack) => {
      void this.systemMessage(payload, socket.id).then((reply) => safeAck(ack, reply));
    });

    socket.on('disconnect', () => {
      for (const id of watched) this.unwatch(socket, id);
    });
  }

  /**
   * Delivers a system message to the master ('MASTER'), everybody (null) or one client (a runner id
   * or a socket id), and answers once every recipient acknowledged it (or did not within the ack
   * timeout: those are counted as missed).
   */
  async systemMessage(payload: unknown, from: string): Promise<SysmsgReply> {
    const parsed = sysmsgRequestSchema.safeParse(payload);
    if (!parsed.success) {
      const issues = formatIssues(parsed.error.issues);
      return { ok: false, error: wireError('EVALIDATION', summarize(issues), { issues }) };
    }
    const { msg, to } = parsed.data;
    const message = { msg, from };
    let delivered = 0;
    let missed = 0;
    if (to === 'MASTER' || to === null) {
      this.emit('sysmsg', msg, from);
      delivered++;
    }
    if (to !== 'MASTER' && this.io) {
      const targets: Socket[] = [];
      for (const nsp of [NAMESPACES.runner, NAMESPACES.feeder]) {
        for (const s of this.io.of(nsp).sockets.values()) {
          const rid = (s.data as { runnerId?: string } | undefined)?.runnerId;
          if (s.id === from || rid === from) continue; // not back to the sender
          if (to === null || s.id === to || rid === to) targets.push(s);
        }
      }
      if (to !== null && targets.length === 0) {
        return { ok: false, error: wireError('EVALIDATION', `to: no connected client "${to}"`) };
      }
      const acks = await Promise.allSettled(
        targets.map((s) => s.timeout(ACK_TIMEOUT_MS).emitWithAck('sysmsg', message)),
      );
      delivered += acks.filter((a) => a.status === 'fulfilled').length;
      missed += acks.length - acks.filter((a) => a.status === 'fulfilled').length;
    }
    return { ok: true, delivered, missed };
  }

  private async handleAdd(payload: unknown, feeder: FeederSocket | null): Promise<AddReply> {
    const parsed = addRequestSchema.safeParse(payload);
    if (!parsed.success) {
      const issues = formatIssues(parsed.error.issues);
      return { ok: false, error: wireError('EVALIDATION', summarize(issues), { issues }) };
    }
    const { tasks, batch, calledAt } = parsed.data;
    try {
      const reply = await this.scheduler.add(tasks, batch, calledAt);
      if (reply.ok && feeder) for (const t of reply.tasks) this.watch(feeder, t.id);
      return reply;
    } catch (err) {
      this.logger.error('add failed', { error: String(err) });
      return { ok: false, error: wireError('EUNKNOWN', `add failed: ${String(err)}`) };
    }
  }

  /** Outcomes that became final before the feeder was watching (a dependency that had already failed). */
  private sendEarly(feeder: FeederSocket, reply: AddReply): void {
    if (!reply.ok) return;
    const early = reply.tasks
      .map((t) => this.scheduler.finals.get(t.id))
      .filter((o): o is TaskOutcome => !!o);
    if (early.length === 0) return;
    for (const o of early) this.unwatch(feeder, o.id);
    feeder.emit('task:outcomes', { outcomes: early });
  }

  private watch(socket: FeederSocket, id: string): void {
    let set = this.watchers.get(id);
    if (!set) this.watchers.set(id, (set = new Set()));
    set.add(socket);
    (socket.data as { watched: Set<string> }).watched.add(id);
  }

  private unwatch(socket: FeederSocket, id: string): void {
    const set = this.watchers.get(id);
    if (set) {
      set.delete(socket);
      if (set.size === 0) this.watchers.delete(id);
    }
    (socket.data as { watched: Set<string> }).watched.delete(id);
  }

  /** Sends final outcomes (already durable) to the feeders watching them, one message per feeder. */
  private deliver(outcomes: TaskOutcome[]): void {
    const per = new Map<FeederSocket, TaskOutcome[]>();
    for (const o of outcomes) {
      const set = this.watchers.get(o.id);
      if (!set) continue;
      for (const s of set) {
        let list = per.get(s);
        if (!list) per.set(s, (list = []));
        list.push(o);
        (s.data as { watched: Set<string> }).watched.delete(o.id);
      }
      this.watchers.delete(o.id);
    }
    for (const [s, list] of per) s.emit('task:outcomes', { outcomes: list });
    this.emit('outcomes', outcomes);
  }

  /** Resolves once every change made so far is durable and folded into `tasks`. */
  async flushed(): Promise<void> {
    await this.store?.barrier();
    await this.store?.folder.settled();
  }

  /** Removes final tasks matching `filter` from the database (and memory); their ids can be used again. */
  purge(filter: PurgeFilter): Promise<number> {
    if (!this.retention) throw new Error('master not started');
    return this.retention.purge(filter);
  }

  /** The write-through store's backlog and lag, for status and health. */
  storeStatus(): ReturnType<Store['status']> | null {
    return this.store?.status() ?? null;
  }

  /** SuperCluster's tracker answer: the masters and runners this master knows. */
  hostsAvailable(): {
    masters: { url: string; data: Record<string, unknown> }[];
    runners: Record<string, unknown>[];
  } {
    const runners = this.listRunners().map((r) => ({ id: r.id, hostname: r.hostname, data: r.data }));
    return { masters: [{ url: this.url, data: this.opts.announce?.data ?? {} }], runners };
  }

  /** Runners as the status API shows them. */
  listRunners(): Record<string, unknown>[] {
    return this.sched ? [...this.sched.runners.values()].map(describeRunner) : [];
  }

  close(): Promise<void> {
    this.closing ??= this.doClose();
    return this.closing;
  }

  private async doClose(): Promise<void> {
    await this.starting?.catch(() => undefined);
    this.announcer?.stop();
    this.io?.disconnectSockets(true);
    await new Promise<void>((resolve) => (this.io ? this.io.close(() => resolve()) : resolve()));
    await this.retention?.stop();
    await this.sched?.close();
    await this.store?.close();
    await this.conn?.close();
    this.logger.info('master closed');
  }
}

function safeAck<T>(ack: unknown, reply: T): void {
  if (typeof ack === 'function') (ack as (r: T) => void)(reply);
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

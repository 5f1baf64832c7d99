/**
 * The master process: Socket.IO namespaces for runners (/runner), feeders (/feeder) and the original
 * protocol (/), a small HTTP API beside them, the scheduler and its write-through store.
 * Every payload received is parsed with its zod schema before it reaches the scheduler; a refused
 * request gets an error naming the field and the reason, and nothing else is disturbed.
 */
import { EventEmitter } from 'node:events';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo, Socket as NetSocket } from 'node:net';
import type { Collection, Connection } from 'mongoose';
import { Server, type DefaultEventsMap, type Namespace, type Socket } from 'socket.io';
import { limitLog, logLimiter } from '../common/log-limit';
import { silentLogger, type Logger } from '../common/logger';
import { z } from 'zod';
import { TaskmasterError, wireError, type WireError } from '../protocol/errors';
import {
  ACK_TIMEOUT_MS,
  NAMESPACES,
  type AttemptRef,
  type Sysmsg,
  type SysmsgReply,
  type FeederToMaster,
  type MasterToFeeder,
  type MasterToRunner,
  type RunnerToMaster,
} from '../protocol/events';
import {
  addRequestSchema,
  cancelRequestSchema,
  MAX_TIMER_MS,
  sysmsgRequestSchema,
  helloSchema,
  modulesUpdateSchema,
  progressSchema,
  resultsSchema,
  startedSchema,
  watchRequestSchema,
  type AddReply,
  type ParsedAddRequest,
  type TaskOutcome,
} from '../protocol/schemas';
import { ENVELOPE_BYTES, messageRoom } from '../protocol/limits';
import { connectDatabase, ensureCollections } from '../models/connection';
import { startAnnouncer } from './announcer';
import { checkTokenLength, handshakeCheck, tokenMiddleware } from './auth';
import { exposureIssue } from './config';
import { on, onInternal } from './handler';
import { apiRoutes, type ApiView } from './http/api';
import { limitsRoutes, type LimitsView } from './http/limits-api';
import { scheduleRoutes, type ScheduleApiView } from './http/schedule-routes';
import { Dashboard } from './http/dashboard';
import { baseRoutes, HttpRoutes, type Readiness } from './http/server';
import { leaseRegistry, Metrics, processRegistry } from './http/metrics';
import { Monitor } from './http/monitor';
import { storedBatches } from './store/queries';
import { cancelInSlices } from './cancel';
import { rerun, rerunBatch, type RerunResult } from './rerun';
import { staticRoutes } from './http/static';
import { serveLegacy } from './legacy';
import { MasterLease, type LeaseDoc, type LeaseStatus } from './lease';
import type { Registry } from 'prom-client';
import {
  MASTER_DEFAULTS,
  schedulerOptions,
  shownConfig,
  type MasterDefaults,
  type MasterOptions,
} from './options';
import { RunnerIdConflict, runnerEntry, type RunnerEntry } from './scheduler/runner-registry';
import { Scheduler } from './scheduler/scheduler';
import { LimitBook, type LimitEntry } from './scheduler/limit-rules';
import { parseLimit, type LimitRule } from './scheduler/limit-spec';
import { deleteLimit, loadLimits, saveLimit } from './store/limits';
import { Retention, type PurgeFilter } from './store/retention';
import { Store } from './store/store';
import { Watchers } from './watchers';
import { rewriteFromMemory } from './store/rewrite';
import { ScanGate } from './http/scan-gate';
import { BatchNames } from './scheduler/batch-names';
import { checkConnectionLimits, ConnectionGuard, fitLimits, type ConnectionCounts } from './connections';
import { TickBatch } from './tick-batch';
import { WireCounts, type WireCountsView } from './wire-counts';
import { SlowReaders } from './slow-readers';
import { checkTlsPair, describeCertificate, type CertificateInfo, type TlsPair } from './tls';
import type { TaskDoc } from '../models/task';
import type { TaskRecord } from './task-record';
import type { ScheduleDoc } from '../models/schedule';
import {
  scheduleInputSchema,
  scheduleListRequestSchema,
  scheduleRemoveRequestSchema,
} from '../protocol/schedules';
import { Schedules } from './schedules/schedules';
import { fenced } from './store/fence';

/** What the master keeps on a runner's connection (Socket.IO's `socket.data`): the id it holds. */
interface RunnerSocketData {
  runnerId?: string;
}
/** What the master keeps on a feeder's connection: the task ids it watches. */
interface FeederSocketData {
  watched: Set<string>;
}
type RunnerNamespace = Namespace<RunnerToMaster, MasterToRunner, DefaultEventsMap, RunnerSocketData>;
type FeederNamespace = Namespace<FeederToMaster, MasterToFeeder, DefaultEventsMap, FeederSocketData>;
type RunnerSocket = Socket<RunnerToMaster, MasterToRunner, DefaultEventsMap, RunnerSocketData>;
type FeederSocket = Socket<FeederToMaster, MasterToFeeder, DefaultEventsMap, FeederSocketData>;

export class Master extends EventEmitter implements ApiView, ScheduleApiView, LimitsView {
  readonly opts: MasterOptions & MasterDefaults;
  readonly logger: Logger;
  private conn: Connection | null = null;
  private lease: MasterLease | null = null;
  private store: Store | null = null;
  private retention: Retention | null = null;
  private schedulesOf: Schedules | null = null;
  private sched: Scheduler | null = null;
  private server: http.Server | https.Server | null = null;
  private io: Server | null = null;
  private runnerNsp: RunnerNamespace | null = null;
  private feederNsp: FeederNamespace | null = null;
  private legacyNsp: Namespace | null = null;
  private dashboardNsp: Namespace | null = null;
  /** This master holds the lease and has rebuilt its state: it takes clients. */
  private active = false;
  /** The activation in progress or done (the lease was won), null on a standby. */
  private activation: Promise<void> | null = null;
  /** The step-down in progress (the lease was lost). */
  private stepping: Promise<void> | null = null;
  private processMetrics: Registry | null = null;
  private leaseMetrics: Registry | null = null;
  /** Feeder sockets watching each task id. */
  private readonly watchers: Watchers<FeederSocket>;
  private starting: Promise<void> | null = null;
  private announcer: { stop(): void } | null = null;
  private closing: Promise<void> | null = null;
  private mon: Monitor | null = null;
  /** Reads of `tasks` that may scan, bounded (`maxScans`). */
  readonly scans: ScanGate;
  /** The batches `tasks` may hold: an unknown one is answered without a scan. */
  readonly batchNames = new BatchNames();
  private metricsOf: Metrics | null = null;
  private dashboard: Dashboard | null = null;
  private connections: ConnectionGuard | null = null;
  private readonly wire = new WireCounts();
  private slowReaders: SlowReaders | null = null;
  /** Recovery finished: the master serves what the database held (readiness). */
  private recovered = false;
  /** The database was dropped under this master: memory is being written back (`rewriteFromMemory`). */
  private rewriting: Promise<void> | null = null;
  private rewritingSince = 0;

  constructor(opts: MasterOptions) {
    super();
    this.opts = { ...MASTER_DEFAULTS, ...stripUndefined(opts) } as MasterOptions & MasterDefaults;
    this.logger = (opts.logger ?? silentLogger()).child({ role: 'master' });
    checkTokenLength(this.opts.host, this.opts.token, this.opts.readToken);
    // The same rule as the CLI's: beyond loopback, TLS and a token, or insecure said out loud.
    const exposure = exposureIssue(this.opts.host, { token: !!this.opts.token, tls: !!this.opts.tls });
    if (exposure && !this.opts.insecure) throw new TaskmasterError('EVALIDATION', exposure);
    checkMessageLimits(this.opts);
    this.watchers = new Watchers(this.opts.maxWatched);
    if (!Number.isInteger(this.opts.maxScans) || this.opts.maxScans < 1)
      throw new TaskmasterError('EVALIDATION', 'maxScans: must be an integer of at least 1');
    this.scans = new ScanGate(this.opts.maxScans);
    if (this.opts.tls) checkTlsPair(this.opts.tls, { cert: 'tls.cert', key: 'tls.key' });
    // Longer delays would fire at once (Node's timers hold 32 bits).
    for (const key of [
      'recoveryGraceMs',
      'disconnectGraceMs',
      'timeoutSweepMs',
      'distributeDelayMs',
      'leaseMs',
      'handshakeTimeoutMs',
      'runTimeoutGraceMs',
    ] as const) {
      const v = this.opts[key];
      if (!Number.isInteger(v) || v < 0 || v > MAX_TIMER_MS)
        throw new TaskmasterError('EVALIDATION', `${key}: must be an integer from 0 to ${MAX_TIMER_MS} ms`);
    }
    // Dependencies' results travel in assignments: the message limit bounds what one may carry.
    const { maxDependencyBytes: deps, maxMessageBytes: message } = this.opts;
    if (!Number.isInteger(deps) || deps < 0 || deps > message)
      throw new TaskmasterError(
        'EVALIDATION',
        `maxDependencyBytes: must be an integer from 0 to maxMessageBytes (${message} bytes); got ${deps}`,
      );
    // Unset, the bound grows with the message limit: a master made for large messages must hold two.
    if (opts.maxBufferedBytes === undefined)
      this.opts.maxBufferedBytes = Math.max(MASTER_DEFAULTS.maxBufferedBytes, 2 * this.opts.maxMessageBytes);
    checkConnectionLimits(this.opts);
    // Throws EVALIDATION naming the value at fault (`limits[1]: …`).
    new LimitBook(this.opts.limits);
    const runTimeout = this.opts.defaultRunTimeout;
    if (
      runTimeout !== undefined &&
      !(Number.isInteger(runTimeout) && runTimeout > 0 && runTimeout <= MAX_TIMER_MS)
    )
      throw new TaskmasterError(
        'EVALIDATION',
        `defaultRunTimeout: must be an integer from 1 to ${MAX_TIMER_MS} ms`,
      );
  }

  /** The shared secret, for the HTTP API's check. */
  get token(): string | undefined {
    return this.opts.token;
  }

  /** The read-only secret: GET routes and status, nothing that acts. */
  get readToken(): string | undefined {
    return this.opts.readToken;
  }

  /** The options in effect, as `/api/config` shows them: secrets redacted. */
  config(): Record<string, unknown> {
    return shownConfig(this.opts);
  }

  /** Origins a browser may call from besides the master's own (`allowOrigins`). */
  originAllowed(origin: string | undefined): boolean {
    if (origin === undefined) return true; // not a browser: Node clients send no Origin
    return origin === new URL(this.url).origin || this.opts.allowOrigins.includes(origin);
  }

  get scheduler(): Scheduler {
    if (!this.sched) throw new Error('master not started');
    return this.sched;
  }

  /** The recurring schedules this master fires while active (master/schedules/). */
  get schedules(): Schedules {
    if (!this.schedulesOf) throw new Error('master not started');
    return this.schedulesOf;
  }

  /** Counts, batches and task timelines for the dashboard and the API. */
  get monitor(): Monitor {
    if (!this.mon) throw new Error('master not started');
    return this.mon;
  }

  get tasksCollection(): Collection<TaskDoc> {
    if (!this.store) throw new Error('master not started');
    return this.store.tasks;
  }

  /**
   * `tasks`, once it holds every acknowledged task: the folder inserts a new task's document after
   * a delay (master/store/fold.ts), and a read through the master must find every task it acknowledged.
   */
  async readTasks(): Promise<Collection<TaskDoc>> {
    if (!this.store) throw new Error('master not started');
    await this.store.folder.insertUnbornNow();
    return this.store.tasks;
  }

  unfoldedRecord(id: string): TaskRecord | undefined {
    return this.store?.folder.pendingRecord(id);
  }

  /** Stores a limit for `selector` and applies it (`PUT /api/limits/SELECTOR`; both parsed already). */
  async putLimit(selector: string, spec: string): Promise<LimitEntry> {
    const store = this.store;
    const rule = parseLimit(`${selector}=${spec}`);
    if (!store) throw new Error('master not started');
    if (!rule.ok) throw new TaskmasterError('EVALIDATION', rule.message);
    await saveLimit(store.limits, selector, spec);
    const sched = this.scheduler;
    sched.limitBook.put(rule.value);
    sched.applyLimits();
    this.logger.info('limit set', { selector, spec });
    return sched.limitBook.get(selector) as LimitEntry;
  }

  /** Deletes the stored limit of `selector` (`DELETE /api/limits/SELECTOR`): the option's applies again. */
  async deleteLimit(selector: string): Promise<{ deleted: boolean; effective: LimitEntry | null }> {
    const store = this.store;
    if (!store) throw new Error('master not started');
    const deleted = await deleteLimit(store.limits, selector);
    const sched = this.scheduler;
    if (sched.limitBook.delete(selector) || deleted) sched.applyLimits();
    if (deleted) this.logger.info('stored limit deleted', { selector });
    return { deleted, effective: sched.limitBook.get(selector) ?? null };
  }

  private parseStoredLimits(docs: { selector: string; spec: string }[]): LimitRule[] {
    const out: LimitRule[] = [];
    for (const d of docs) {
      const r = parseLimit(`${d.selector}=${d.spec}`);
      if (r.ok) out.push(r.value);
      else
        this.logger.warn('stored limit ignored: it does not parse', {
          selector: d.selector,
          error: r.message,
        });
    }
    return out;
  }

  /** Operator retry: these tasks run again, and the tasks that failed only because they did. */
  retry(ids: string[]): Promise<RerunResult> {
    if (!this.store) throw new Error('master not started');
    return rerun(this.scheduler, this.store, ids);
  }

  /** Cancels tasks by id and/or batch, in time slices (master/cancel.ts); the ids cancelled. */
  cancel(ids: string[] | undefined, batch: string | undefined, by?: string): Promise<string[]> {
    return cancelInSlices(this.scheduler, ids, batch, by);
  }

  /** Operator retry of a batch's failures (and their dependents). */
  retryBatch(batch: string): Promise<RerunResult> {
    if (!this.store) throw new Error('master not started');
    return rerunBatch(this.scheduler, this.store, batch);
  }

  /**
   * The lease found the database dropped: says so, and writes back what memory holds. Not ready
   * until that is done. A second drop while it runs starts another pass after it.
   */
  private databaseDropped(): void {
    const sched = this.sched;
    const store = this.store;
    const conn = this.conn;
    this.logger.error(
      'the database was dropped under this master (its lease document is gone): writing back what memory holds',
      { database: conn?.name },
    );
    if (!sched || !store || !conn) return; // still starting: recovery reads what there is
    const prev = this.rewriting ?? Promise.resolve();
    this.rewritingSince ||= Date.now();
    const run = prev
      .then(() => rewriteFromMemory(conn, store, sched, this.logger))
      .then(
        (n) => {
          this.logger.info('wrote back what memory held after the database was dropped', {
            liveTasks: n.live,
            finalOutcomes: n.finals,
            ms: Date.now() - this.rewritingSince,
          });
        },
        (err: unknown) => {
          this.logger.error('could not write back what memory held', { error: String(err) });
        },
      )
      .finally(() => {
        if (this.rewriting !== run) return;
        this.rewriting = null;
        this.rewritingSince = 0;
      });
    this.rewriting = run;
  }

  /**
   * Ready: recovery finished, the database answers a ping (and still holds the lease document), and
   * no write is failing.
   */
  async readiness(): Promise<Readiness> {
    const lease = this.leaseStatus();
    if (lease.role === 'standby' || !this.active)
      return {
        ready: false,
        database: true,
        recovered: this.recovered,
        cause: 'standby',
        error: lease.active
          ? `this master is standby; the active master is at ${lease.active}`
          : 'this master is standby; no master is active right now',
      };
    let database = false;
    try {
      const ping = this.conn?.db?.command({ ping: 1 });
      database = ping !== undefined && (await withTimeout(ping, 2000)) !== undefined;
      // A database dropped under the master answers pings: its lease document tells.
      if (database && this.lease) await withTimeout(this.lease.check(), 2000);
    } catch {
      database = false;
    }
    // A server that answers pings may still refuse writes (a full disk): not ready while they fail.
    const trouble = this.rewriting
      ? {
          cause: 'database dropped',
          error: 'the database was dropped under this master: writing back what memory holds',
          sinceMs: Date.now() - this.rewritingSince,
        }
      : (this.store?.trouble() ?? null);
    const ready = database && this.recovered && !trouble;
    return {
      ready,
      database,
      recovered: this.recovered,
      ...(trouble ? { cause: trouble.cause, error: trouble.error, sinceMs: trouble.sinceMs } : {}),
      ...(!database && !trouble ? { cause: 'database not answering' } : {}),
    };
  }

  /** The election as this master sees it (standby until it started and won the lease). */
  leaseStatus(): LeaseStatus {
    return (
      this.lease?.status() ?? {
        role: 'standby',
        epoch: 0,
        active: null,
        holder: null,
        ageMs: null,
        leaseMs: this.opts.leaseMs,
      }
    );
  }

  /** Prometheus text: the active master's metrics, or a standby's process metrics; the lease's on both. */
  async metrics(): Promise<{ contentType: string; body: string }> {
    const status = () => this.leaseStatus();
    this.leaseMetrics ??= leaseRegistry(status);
    const lease = await this.leaseMetrics.metrics();
    if (this.metricsOf) {
      const m = await this.metricsOf.text();
      return { contentType: m.contentType, body: `${m.body}\n${lease}` };
    }
    this.processMetrics ??= processRegistry();
    return {
      contentType: this.processMetrics.contentType,
      body: `${await this.processMetrics.metrics()}\n${lease}`,
    };
  }

  get port(): number {
    return (this.server?.address() as AddressInfo | null)?.port ?? this.opts.port;
  }

  get url(): string {
    const host = this.opts.host === '0.0.0.0' || this.opts.host === '::' ? '127.0.0.1' : this.opts.host;
    const scheme = this.opts.tls ? 'https' : 'http';
    return `${scheme}://${host.includes(':') ? `[${host}]` : host}:${this.port}`;
  }

  /**
   * Serves a new certificate and key to the connections that open from now on (those open keep
   * theirs). The pair is checked first: a bad one is refused with EVALIDATION and the old one stays.
   */
  setTls(pair: TlsPair): CertificateInfo {
    if (!this.opts.tls) throw new TaskmasterError('EVALIDATION', 'this master was started without TLS');
    const info = checkTlsPair(pair, { cert: 'tls.cert', key: 'tls.key' });
    this.opts.tls = pair;
    (this.server as https.Server | null)?.setSecureContext({ cert: pair.cert, key: pair.key });
    return info;
  }

  start(): Promise<void> {
    this.starting ??= this.doStart();
    return this.starting;
  }

  private async doStart(): Promise<void> {
    // Collections and indexes are made once elected: a standby writes nothing.
    this.conn = await connectDatabase(this.opts.mongoUrl, { dbName: this.opts.dbName, ensure: false });
    this.listenFor(this.conn);
    await new Promise<void>((resolve, reject) => {
      const server = this.server as http.Server | https.Server;
      server.once('error', reject);
      server.listen(this.opts.port, this.opts.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.logger.info('listening; active once elected', { url: this.url });
    if (this.opts.tls) this.logger.info('serving TLS', { ...describeCertificate(this.opts.tls.cert) });
    // Every master on the database competes for the lease: its holder is active, the others stand by.
    const lease = new MasterLease(this.conn.collection<LeaseDoc>('leases'), {
      leaseMs: this.opts.leaseMs,
      url: this.opts.advertiseUrl ?? this.url,
      logger: this.logger,
    });
    this.lease = lease;
    lease.on('elected', (epoch) => {
      this.activation = this.activate(lease, epoch);
      // A takeover's failure is logged in activate(); the first start's fails start().
      this.activation.catch(() => undefined);
    });
    lease.on('lost', (cause, holder) => {
      this.emit('lost', holder);
      void this.stepDown(cause);
    });
    lease.on('dropped', () => this.databaseDropped());
    await lease.start();
    if (this.activation) await this.activation;
    else this.logger.info('standing by', { active: lease.status().active, epoch: lease.epoch });
  }

  /**
   * The HTTP server, Socket.IO and its namespaces: built once, serving a standby master (health,
   * metrics, refusals naming the active one) and an active one alike.
   */
  private listenFor(conn: Connection): void {
    void conn;
    const routes = staticRoutes(
      limitsRoutes(scheduleRoutes(apiRoutes(baseRoutes(new HttpRoutes(this, this.logger))))),
    );
    const handle: http.RequestListener = (req, res) => routes.handle(req, res);
    const tls = this.opts.tls;
    // Node checks these every connectionsCheckingInterval (30 s by default): every second instead.
    const timeouts = {
      headersTimeout: this.opts.handshakeTimeoutMs,
      requestTimeout: Math.max(60_000, this.opts.handshakeTimeoutMs),
      connectionsCheckingInterval: 1000,
    };
    this.server = tls
      ? https.createServer({ cert: tls.cert, key: tls.key, ...timeouts }, handle)
      : http.createServer(timeouts, handle);
    const guard = new ConnectionGuard(fitLimits(this.opts, this.logger), this.logger);
    this.connections = guard;
    this.io = new Server(this.server, {
      // Fast failure detection: a silent runner is noticed within ~10 s, a closed socket at once.
      pingInterval: 5000,
      pingTimeout: 5000,
      // Applies before any namespace's token check: keep it small, so unauthenticated clients cannot
      // make the master buffer much. Feeders split batches and runners cap results under it.
      maxHttpBufferSize: this.opts.maxMessageBytes,
      // No per-message compression (Engine.IO's default, said here because it matters): messages to
      // runners and feeders are small and many, and deflating each costs more CPU than it saves on
      // loopback or a LAN.
      perMessageDeflate: false,
      // A connection that joins no namespace (no valid token) is closed after this long.
      connectTimeout: this.opts.handshakeTimeoutMs,
      cors: { origin: false },
      // Checked on the HTTP handshake, before the WebSocket upgrade: a foreign Origin, or a token
      // given in the handshake that is wrong, is refused before a single packet is read.
      allowRequest: (req, cb) => {
        const refusal = handshakeCheck(
          req,
          this.opts.token,
          (o) => this.originAllowed(o),
          this.opts.readToken,
        );
        if (refusal)
          limitLog(this.logger, 'warn', `handshake:${req.socket.remoteAddress}`, 'handshake refused', {
            reason: refusal,
            origin: req.headers.origin,
            address: req.socket.remoteAddress,
          });
        cb(refusal ?? null, refusal === undefined);
      },
    });
    // After Socket.IO: Engine.IO takes the server's request listeners for paths other than its own,
    // and the guard must see its polling requests too.
    guard.attach(this.server);
    this.slowReaders = new SlowReaders(this.opts.maxBufferedBytes, this.logger);
    this.slowReaders.attach(this.io);
    const auth = tokenMiddleware(this.opts.token);
    // The event maps and socket data of each namespace (Socket.IO's generics apply per server).
    const runners = this.io.of(NAMESPACES.runner) as unknown as RunnerNamespace;
    const feeders = this.io.of(NAMESPACES.feeder) as unknown as FeederNamespace;
    const legacy = this.io.of(NAMESPACES.legacy);
    const dashboard = this.io.of(NAMESPACES.dashboard);
    runners.use(auth);
    feeders.use(auth);
    legacy.use(auth);
    dashboard.use(tokenMiddleware(this.opts.token, this.opts.readToken));
    // After the token check: a standby refuses the client, naming the active master (ESTANDBY).
    const active = (_s: Socket, next: (err?: Error) => void) => {
      if (this.active) return next();
      const lease = this.leaseStatus();
      const where = lease.active
        ? `the active master is at ${lease.active}`
        : 'no master is active right now';
      const message = `this master is standby; ${where}`;
      next(
        Object.assign(new Error(`ESTANDBY: ${message}`), {
          data: { code: 'ESTANDBY', message, active: lease.active, epoch: lease.epoch },
        }),
      );
    };
    // After the token check: a connection that passed it is a client, never closed to make room.
    const member = (s: Socket, next: (err?: Error) => void) => {
      guard.member(s.request.socket);
      // A session begun with HTTP long-polling moves to a WebSocket on a TCP connection of its own.
      s.conn.once('upgrade', (transport: { socket?: { _socket?: NetSocket } }) =>
        guard.member(transport.socket?._socket),
      );
      next();
    };
    for (const nsp of [runners, feeders, legacy, dashboard] as unknown as Namespace[]) {
      nsp.use(active);
      nsp.use(member);
    }
    this.runnerNsp = runners;
    this.feederNsp = feeders;
    this.legacyNsp = legacy;
    this.dashboardNsp = dashboard;
    runners.on('connection', (s) => this.onRunner(s));
    feeders.on('connection', (s) => this.onFeeder(s));
  }

  /**
   * This master won the lease: it rebuilds from `tasks` and the journal as a restart does, then takes
   * clients. Runners that reconnect report their attempts, which it adopts (`recoveryGraceMs`).
   */
  private async activate(lease: MasterLease, epoch: number): Promise<void> {
    await this.stepping;
    const conn = this.conn as Connection;
    const still = () =>
      this.lease === lease && lease.role === 'active' && lease.epoch === epoch && !this.closing;
    try {
      await ensureCollections(conn);
      const store = new Store(conn, {
        writeChunk: this.opts.writeChunk,
        foldBacklogLimit: this.opts.foldBacklogLimit,
        insertDelayMs: this.opts.insertDelayMs,
        logger: this.logger,
        epoch,
        writable: () => lease.writable() && lease.epoch === epoch,
      });
      this.store = store;
      const sched = new Scheduler(store, {
        ...schedulerOptions(this.opts),
        finalCacheSize: 100_000,
        logger: this.logger,
      });
      this.sched = sched;
      // Limits set at run time replace the options' (master/scheduler/limit-rules.ts).
      sched.limitBook.load(this.parseStoredLimits(await loadLimits(store.limits)));
      sched.applyLimits();
      sched.on('outcomes', (outcomes) => this.deliver(outcomes));
      sched.on('assigntimeout', (o) => this.emit('assigntimeout', o));
      const began = Date.now();
      // The stored batches and their names, read beside recovery rather than after it: on FerretDB
      // each of these scans `tasks` (only `_id` is indexed there), and a takeover waits for the
      // longest instead of the sum.
      const [recovered, storedNow] = await Promise.all([
        sched.recover(),
        storedBatches(store.tasks, { limit: 200 }),
        this.batchNames.load(store.tasks),
      ]);
      this.logger.info('recovery finished', {
        open: recovered.tasks,
        orphans: recovered.orphans,
        droppedUnacknowledged: recovered.dropped,
        epoch,
        ms: Date.now() - began,
      });
      // Observers start after recovery: they are seeded with what it left, then see every change.
      const monitor = new Monitor({ logger: this.logger });
      monitor.seed(storedNow, sched.tasks.values());
      const metrics = new Metrics(sched, store);
      store.onWritten = (ms) => metrics.writeTime.observe(ms / 1000);
      sched.observers.push(monitor, metrics, this.batchNames);
      this.mon = monitor;
      this.metricsOf = metrics;
      const guard = this.connections as ConnectionGuard;
      metrics.watchConnections(
        () => guard.status(),
        () => this.slowReaders?.counts ?? { peakBytes: 0, disconnected: 0 },
      );
      this.retention = new Retention(
        store,
        { retainMs: this.opts.retainMs, retainCount: this.opts.retainCount, logger: this.logger },
        (ids) => sched.forgetFinals(ids),
        (id) => sched.tasks.has(id),
      );
      this.retention.start();
      // Slots are added through the scheduler's normal path; an id already stored (a slot fired
      // before a crash or a takeover) is skipped, so no slot makes two tasks.
      const schedules = new Schedules(
        fenced(conn.collection<ScheduleDoc>('schedules'), () => lease.writable() && lease.epoch === epoch),
        (tasks, batch) => sched.add(tasks, batch, undefined, 'skip'),
        this.logger,
      );
      this.schedulesOf = schedules;
      await schedules.start();
      if (!still()) throw new Error('the lease was lost while recovering');
      serveLegacy(this.legacyNsp as Namespace, sched, this.logger);
      this.dashboard = new Dashboard(this.dashboardNsp as Namespace, this, this.logger);
      this.recovered = true;
      this.active = true;
      // Clients are served from now on (scripts and tests wait for this line).
      this.logger.info('master listening', { url: this.url, epoch });
      // Runners can reconnect only from now on: the wait for their recovered attempts starts here.
      sched.startRecoveryGrace();
      if (this.opts.announce) {
        this.announcer = startAnnouncer({
          ...this.opts.announce,
          url: this.url,
          id: `${process.pid}@${this.url}`,
          logger: this.logger,
        });
      }
      this.emit('active', epoch);
    } catch (err) {
      this.logger.error('could not become the active master', { epoch, error: String(err) });
      if (this.lease === lease && lease.role === 'active') void this.close();
      throw err;
    }
  }

  /**
   * This master lost its lease (another took over, or it could not renew in time): it writes nothing
   * more, closes every client connection (they go to the active master) and stops its timers, and
   * stands by. What it held in memory is the new active master's to rebuild from the database.
   */
  private stepDown(cause: string): Promise<void> {
    this.stepping ??= (async () => {
      this.active = false;
      this.store?.abandon();
      await this.activation?.catch(() => undefined);
      this.activation = null;
      this.recovered = false;
      this.store?.abandon();
      this.announcer?.stop();
      this.announcer = null;
      for (const nsp of [this.runnerNsp, this.feederNsp, this.legacyNsp, this.dashboardNsp])
        nsp?.disconnectSockets(true);
      // Their handlers hold this activation's scheduler: the next one adds its own.
      this.legacyNsp?.removeAllListeners('connection');
      this.dashboardNsp?.removeAllListeners('connection');
      this.dashboard?.close();
      this.dashboard = null;
      await this.schedulesOf?.stop();
      this.sched?.abandon();
      await this.retention?.stop();
      this.sched = this.store = this.retention = this.mon = this.metricsOf = this.schedulesOf = null;
      this.logger.warn('standing by', { cause, active: this.lease?.status().active ?? null });
      this.emit('standby', cause);
    })().finally(() => (this.stepping = null));
    return this.stepping;
  }

  // ---- runners ---------------------------------------------------------------------------------

  private onRunner(socket: RunnerSocket): void {
    this.wire.attach(socket);
    // One connection is one runner: the id of its first accepted hello.
    let mine: RunnerEntry | null = null;
    const log = this.logger.child({ socket: socket.id });
    const runners = () => this.scheduler.runners;
    // Connections are taken only while active: the epoch won for this activation.
    const epoch = this.leaseStatus().epoch;
    /** This connection's runner entry, while it holds it. */
    const held = () => (mine ? runners().heldBy(mine.id, socket.id) : undefined);
    const noHello = wireError(
      'EVALIDATION',
      'say runner:hello first (or this connection lost its runner id)',
    );

    // The cancels of one tick go together, one task:cancel per reason (a batch cancelled while it runs).
    const cancels = new TickBatch<AttemptRef>((tasks, reason) =>
      socket.emit('task:cancel', { tasks, reason, epoch }),
    );

    on(socket, log, 'runner:hello', { schema: helloSchema, prefix: 'hello' }, (h, reply) => {
      if (mine && mine.id !== h.runnerId)
        return reply.refuse(
          wireError('ERUNNERID', `this connection is runner "${mine.id}"; one connection is one runner`),
        );
      const entry = runnerEntry({
        id: h.runnerId,
        hostname: h.hostname,
        pid: h.pid,
        slots: h.slots,
        workers: h.workers,
        data: h.data,
        modules: h.modules,
        prioritySlots: h.prioritySlots,
        sacred: this.opts.sacredGuarantees === true,
        legacy: false,
        conn: socket.id,
        link: {
          // The epoch of this activation: a runner ignores what an older one sends (a deposed master).
          assign: (tasks) => socket.emit('task:assign', { tasks, epoch }),
          cancel: (tasks, reason) => cancels.add(reason, tasks),
        },
      });
      try {
        runners().checkClaim(entry);
      } catch (err) {
        if (!(err instanceof RunnerIdConflict)) throw err;
        limitLog(log, 'warn', `claim:${h.runnerId}`, 'hello refused: runner id held by another connection', {
          runnerId: h.runnerId,
        });
        this.emit('runner:refused', h.runnerId, 'ERUNNERID');
        return reply.refuse(wireError('ERUNNERID', err.message));
      }
      const drop = this.scheduler.runnerUp(entry, h.running);
      mine = entry;
      socket.data = { runnerId: h.runnerId };
      limitLog(log, 'info', `up:${h.runnerId}`, 'runner ready', {
        runnerId: h.runnerId,
        slots: h.slots,
        workers: h.workers,
        holding: h.running.length,
      });
      reply({
        ok: true,
        runnerId: h.runnerId,
        drop,
        limits: { maxMessageBytes: this.opts.maxMessageBytes },
        epoch: this.leaseStatus().epoch,
      });
      this.emit('runner:up', h.runnerId);
    });

    on(socket, log, 'task:started', { schema: startedSchema }, (p, reply) => {
      const r = held();
      if (!r) return reply.refuse(noHello);
      this.scheduler.started(r.id, p.tasks);
      this.emit('task:started', r.id, p.tasks);
    });

    const refuseResults = (error: WireError) => ({ ok: false, accepted: 0, stale: 0, error });
    on(socket, log, 'task:results', { schema: resultsSchema, refuse: refuseResults }, async (p, reply) => {
      const r = held();
      if (!r) return reply.refuse(noHello);
      // Starts first: the attempts went through running, as if the runner had sent task:started.
      if (p.started && p.started.length > 0) {
        this.scheduler.started(r.id, p.started);
        this.emit('task:started', r.id, p.started);
      }
      return { ok: true, ...(await this.scheduler.results(r.id, p.results)) };
    });

    // Identity belongs to the connection: progress is passed on to feeders only from the runner that
    // holds the attempt now, and only within 0–1; any other report is refused and goes nowhere.
    on(socket, log, 'task:progress', { schema: progressSchema }, (p, reply) => {
      const r = held();
      if (!r) return reply.refuse(noHello);
      const progress = this.scheduler.progress(r.id, p);
      if (progress === undefined) {
        limitLog(
          log,
          'info',
          `progress:${r.id}`,
          'progress for an attempt the runner does not hold ignored',
          {
            runnerId: r.id,
            taskId: p.id,
            attempt: p.attempt,
          },
        );
        return reply.refuse(
          wireError(
            'ESTALE',
            `progress of task "${p.id}" attempt ${p.attempt}: this runner does not hold it`,
          ),
        );
      }
      for (const f of this.watchers.watchers(p.id)) f.emit('task:progress', { ...p, progress });
    });

    on(socket, log, 'runner:draining', { schema: z.unknown() }, (_p, reply) => {
      const r = held();
      if (!r) return reply.refuse(noHello);
      runners().setDraining(r, true);
      log.info('runner draining', { runnerId: r.id });
    });

    const refuseRelease = (error: WireError) => ({ ok: false, released: 0, error });
    on(socket, log, 'task:release', { schema: startedSchema, refuse: refuseRelease }, async (p, reply) => {
      const r = held();
      if (!r) return reply.refuse(noHello);
      const released = this.scheduler.release(r.id, p.tasks);
      log.info('attempts released by their runner', { runnerId: r.id, released });
      await this.scheduler.flushed();
      return { ok: true, released };
    });

    on(socket, log, 'runner:modules', { schema: modulesUpdateSchema }, (p) => {
      const r = held();
      if (r) this.scheduler.modulesChanged(r, p.modules);
    });

    on(socket, log, 'tasks:add', { schema: addRequestSchema }, (p) => this.handleAdd(p, null));

    on(socket, log, 'sysmsg:send', { schema: sysmsgRequestSchema }, (p) =>
      this.systemMessage(p, held()?.id ?? socket.id),
    );

    onInternal(socket, log, 'disconnect', (reason) => {
      // Only while this connection holds its runner: a newer connection of the same runner may
      // already have replaced it (the registry tells, as for every report of this connection).
      if (!mine || !held()) return;
      limitLog(log, 'info', `down:${mine.id}`, 'runner disconnected', { runnerId: mine.id, reason });
      this.scheduler.runnerDown(mine.id);
      this.emit('runner:down', mine.id);
    });
  }

  // ---- feeders ---------------------------------------------------------------------------------

  private onFeeder(socket: FeederSocket): void {
    socket.data = { watched: new Set<string>() };
    const log = this.logger.child({ socket: socket.id });

    on(socket, log, 'tasks:add', { schema: addRequestSchema }, async (p, reply) => {
      const ids = p.tasks.map((t) => (t as { id?: unknown } | null)?.id);
      const named = ids.filter((id): id is string => typeof id === 'string');
      const full = this.watchers.room(socket, named, ids.length - named.length, 'tasks');
      if (full) return reply.refuse(full);
      const r = await this.handleAdd(p, socket);
      reply(r);
      this.sendEarly(socket, r);
    });

    on(socket, log, 'tasks:watch', { schema: watchRequestSchema }, async (p, reply) => {
      const full = this.watchers.room(socket, p.ids, 0, 'ids');
      if (full) return reply.refuse(full);
      for (const id of p.ids) this.watch(socket, id);
      const r = await this.scheduler.lookup(p.ids);
      for (const o of r.outcomes) this.unwatch(socket, o.id);
      for (const id of r.unknown) this.unwatch(socket, id);
      return { ok: true, outcomes: r.outcomes, unknown: r.unknown };
    });

    on(socket, log, 'tasks:cancel', { schema: cancelRequestSchema }, async (p) => ({
      ok: true,
      cancelled: await this.cancel(p.ids, p.batch),
    }));

    on(socket, log, 'sysmsg:send', { schema: sysmsgRequestSchema }, (p) => this.systemMessage(p, socket.id));

    on(socket, log, 'schedules:put', { schema: scheduleInputSchema }, (p) => this.schedules.put(p));

    on(socket, log, 'schedules:remove', { schema: scheduleRemoveRequestSchema }, async (p) => ({
      ok: true,
      removed: await this.schedules.remove(p.id),
    }));

    on(socket, log, 'schedules:list', { schema: scheduleListRequestSchema }, () => ({
      ok: true,
      schedules: this.schedules.list(),
    }));

    onInternal(socket, log, 'disconnect', () => this.watchers.forget(socket));
  }

  /**
   * Delivers a system message to the master ('MASTER'), everybody (null) or one client (a runner id
   * or a socket id), and answers once every recipient acknowledged it (or did not within the ack
   * timeout: those are counted as missed).
   */
  async systemMessage({ msg, to }: z.output<typeof sysmsgRequestSchema>, from: string): Promise<SysmsgReply> {
    const message = { msg, from };
    let delivered = 0;
    let missed = 0;
    if (to === 'MASTER' || to === null) {
      this.emit('sysmsg', msg, from);
      delivered++;
    }
    if (to !== 'MASTER' && this.io) {
      const clients: (readonly [SysmsgRecipient, string | undefined])[] = [
        ...[...(this.runnerNsp?.sockets.values() ?? [])].map((s) => [s, s.data.runnerId] as const),
        ...[...(this.feederNsp?.sockets.values() ?? [])].map((s) => [s, undefined] as const),
      ];
      const targets: SysmsgRecipient[] = [];
      for (const [s, rid] of clients) {
        if (s.id === from || rid === from) continue; // not back to the sender
        if (to === null || s.id === to || rid === to) targets.push(s);
      }
      if (to !== null && targets.length === 0) {
        return { ok: false, error: wireError('EVALIDATION', `to: no connected client "${to}"`) };
      }
      const acks = await Promise.allSettled(targets.map((s) => deliverSysmsg(s, message)));
      delivered += acks.filter((a) => a.status === 'fulfilled').length;
      missed += acks.length - acks.filter((a) => a.status === 'fulfilled').length;
    }
    return { ok: true, delivered, missed };
  }

  private async handleAdd(
    { tasks, batch, calledAt, onExisting, addKey }: ParsedAddRequest,
    feeder: FeederSocket | null,
  ): Promise<AddReply> {
    // A failure here is the handler wrapper's to log and answer (EINTERNAL).
    const reply = await this.scheduler.add(tasks, batch, calledAt, onExisting, addKey);
    if (reply.ok && feeder) for (const t of reply.tasks) this.watch(feeder, t.id);
    return reply;
  }

  /** Outcomes that became final before the feeder was watching (a dependency that had already failed). */
  private sendEarly(feeder: FeederSocket, reply: AddReply): void {
    if (!reply.ok) return;
    const early = reply.tasks
      .map((t) => this.scheduler.finals.get(t.id))
      .filter((o): o is TaskOutcome => !!o);
    if (early.length > 0) {
      for (const o of early) this.unwatch(feeder, o.id);
      feeder.emit('task:outcomes', { outcomes: early });
    }
    // A retry of an add (`addKey`) may name tasks that finished before a restart: only the
    // database still has their outcomes. Never the case for the tasks a new add stored.
    const stored = reply.tasks
      .filter((t) => !t.existing && !this.scheduler.tasks.has(t.id) && !this.scheduler.finals.has(t.id))
      .map((t) => t.id);
    if (stored.length > 0)
      void this.scheduler.lookup(stored).then(
        ({ outcomes }) => {
          if (outcomes.length === 0) return;
          for (const o of outcomes) this.unwatch(feeder, o.id);
          feeder.emit('task:outcomes', { outcomes });
        },
        (err: unknown) => this.logger.warn('stored outcomes of an add not sent', { error: String(err) }),
      );
  }

  private watch(socket: FeederSocket, id: string): void {
    this.watchers.watch(socket, id);
  }

  private unwatch(socket: FeederSocket, id: string): void {
    this.watchers.unwatch(socket, id);
  }

  /** Sends final outcomes (already durable) to the feeders watching them, in chunks. */
  private deliver(outcomes: TaskOutcome[]): void {
    this.watchers.deliver(outcomes);
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

  /** Runs one retention pass now (by age, then by count); resolves to how many tasks it removed. */
  retainNow(): Promise<number> {
    if (!this.retention) throw new Error('master not started');
    return this.retention.pass();
  }

  /** Connections held and closed by the limits (master/connections.ts). */
  connectionStatus(): ConnectionCounts | null {
    return this.connections?.status() ?? null;
  }

  /** Messages exchanged with runners since start, by direction and event. */
  wireCounts(): WireCountsView {
    return this.wire.view();
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
    return this.sched?.runners.describe() ?? [];
  }

  close(): Promise<void> {
    this.closing ??= this.doClose();
    return this.closing;
  }

  private async doClose(): Promise<void> {
    await this.starting?.catch(() => undefined);
    await this.stepping;
    this.active = false;
    this.announcer?.stop();
    this.dashboard?.close();
    for (const nsp of [this.runnerNsp, this.feederNsp, this.legacyNsp, this.dashboardNsp])
      nsp?.disconnectSockets(true);
    await new Promise<void>((resolve) => (this.io ? this.io.close(() => resolve()) : resolve()));
    await this.schedulesOf?.stop();
    await this.retention?.stop();
    // The last changes are written, unless the lease is lost meanwhile (then nothing more is).
    const store = this.store;
    if (store)
      await Promise.race([
        (async () => {
          await this.sched?.close();
          await store.close();
        })(),
        store.abandoned,
      ]);
    // Last: a standby takes over at once, and finds everything written.
    await this.lease?.release();
    await this.conn?.close();
    logLimiter.flush();
    this.mon?.flushLines();
    this.logger.info('master closed');
  }
}

/** A runner's or a feeder's connection, as a system message reaches it. */
interface SysmsgRecipient {
  readonly id: string;
  emit(ev: 'sysmsg', m: Sysmsg, ack: () => void): boolean;
  once(ev: 'disconnect', listener: () => void): unknown;
}

/** Deliveries waiting for each socket's acknowledgement, failed together when it disconnects. */
const awaitingAck = new WeakMap<SysmsgRecipient, Set<(err: Error) => void>>();

/**
 * One system message, acknowledged by its recipient: rejects when the recipient disconnects or does
 * not answer within the ack timeout. The timer does not keep the process alive, and a departed
 * recipient counts as missed at once rather than holding the sender for the whole timeout.
 */
function deliverSysmsg(s: SysmsgRecipient, message: Sysmsg): Promise<void> {
  let waiting = awaitingAck.get(s);
  if (!waiting) {
    const set = new Set<(err: Error) => void>();
    awaitingAck.set(s, (waiting = set));
    s.once('disconnect', () => {
      for (const fail of [...set]) fail(new Error('the recipient disconnected'));
    });
  }
  const pending = waiting;
  return new Promise((resolve, reject) => {
    const done = (err?: Error) => {
      clearTimeout(timer);
      pending.delete(done);
      if (err) reject(err);
      else resolve();
    };
    const timer = setTimeout(() => done(new Error('no acknowledgement')), ACK_TIMEOUT_MS).unref();
    pending.add(done);
    s.emit('sysmsg', message, () => done());
  });
}

/** The promise's value, or undefined if it takes longer than `ms`. */
function withTimeout<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<undefined>((resolve) => {
      timer = setTimeout(() => resolve(undefined), ms);
      timer.unref();
    }),
  ]).finally(() => clearTimeout(timer));
}

/**
 * A task must fit in one message: `maxTaskBytes` defaults to what one carries, and a larger one is
 * refused at start rather than by the transport later (which closes the feeder's connection).
 */
function checkMessageLimits(o: MasterOptions & MasterDefaults): void {
  const room = messageRoom(o.maxMessageBytes);
  if (!Number.isInteger(o.maxMessageBytes) || room < 1024)
    throw new TaskmasterError(
      'EVALIDATION',
      `maxMessageBytes: must be an integer of at least ${ENVELOPE_BYTES + 1024}`,
    );
  o.maxTaskBytes ??= room;
  if (o.maxTaskBytes > room)
    throw new TaskmasterError(
      'EVALIDATION',
      `maxTaskBytes (--max-task-bytes) ${o.maxTaskBytes} does not fit in one message: at most ` +
        `maxMessageBytes (--max-message-bytes) ${o.maxMessageBytes} less ${ENVELOPE_BYTES} bytes of envelope, ${room}. ` +
        'Raise --max-message-bytes with it',
    );
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

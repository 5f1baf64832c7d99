/**
 * The runner's connection to the master's /runner namespace. Connecting, reconnecting with backoff,
 * a refused token and the warnings while the master is away are the client link's (common/
 * client-link.ts, shared with the feeder); this class adds the handshake that makes a connection
 * usable: `runner:hello` on every connect, retried until acknowledged, whose reply lists the attempts
 * to drop. Nothing but the hello goes out before that ack, so the master always knows who is talking.
 *
 * Assignments and cancels pass the epoch fence (runner/epoch-fence.ts) before the runner sees them:
 * one from a master older than one already heard from is refused here, with a warning naming both.
 */
import { EventEmitter } from 'node:events';
import { type Socket } from 'socket.io-client';
import { z } from 'zod';
import { backoffDelay } from '../common/backoff';
import { ClientLink } from '../common/client-link';
import type { Logger } from '../common/logger';
import { EpochFence } from './epoch-fence';
import { type TaskmasterError, toError } from '../protocol/errors';
import { formatIssues } from '../protocol/issues';
import {
  NAMESPACES,
  type AttemptRef,
  type MasterToRunner,
  type Progress,
  type ResultsAck,
  type RunnerToMaster,
  type SysmsgReply,
} from '../protocol/events';
import {
  addReplySchema,
  assignSchema,
  helloReplySchema,
  releaseReplySchema,
  resultsAckSchema,
  sysmsgReplySchema,
  sysmsgSchema,
  type AddReply,
  type AddRequest,
  type AttemptResult,
  type Hello,
  type ModuleInfo,
} from '../protocol/schemas';

type RunnerSocket = Socket<MasterToRunner, RunnerToMaster>;

export interface ConnectionOptions {
  /** The masters' URLs, in the order they are tried (see common/client-link.ts). */
  master: string | readonly string[];
  token?: string;
  ca?: string | string[];
  ackTimeoutMs: number;
  reconnectDelayMs: number;
  reconnectDelayMaxMs: number;
  logger: Logger;
  /** Builds the hello at the moment it is sent, so `running` is current. */
  hello(): Hello;
}

export interface ConnectionEvents {
  /** The master acknowledged the hello on this connection. */
  ready: [drop: AttemptRef[]];
  down: [reason: string];
  /** The master refused us (wrong token, invalid hello); retrying as-is cannot help. */
  refused: [err: TaskmasterError];
  assign: [payload: unknown];
  cancel: [payload: unknown];
  sysmsg: [msg: unknown, from: string];
}

export class MasterConnection extends EventEmitter<ConnectionEvents> {
  private readonly link: ClientLink<MasterToRunner, RunnerToMaster>;
  private readonly socket: RunnerSocket;
  private ready = false;
  /** Bumped on every connect and disconnect, so a hello loop of an older connection stops. */
  private generation = 0;
  private helloTimer: NodeJS.Timeout | null = null;
  /** The master's largest message, from its hello reply (older masters send none). */
  maxMessageBytes: number | undefined;
  private readonly fence = new EpochFence();

  constructor(private readonly opts: ConnectionOptions) {
    super();
    this.link = new ClientLink({
      master: opts.master,
      namespace: NAMESPACES.runner,
      role: 'runner',
      token: opts.token,
      ca: opts.ca,
      reconnectDelayMs: opts.reconnectDelayMs,
      reconnectDelayMaxMs: opts.reconnectDelayMaxMs,
      // Connected by open(), once the children are up.
      autoConnect: false,
      // A runner is long-lived: it keeps trying after a refusal; start() gives up on the first one.
      retryRefused: true,
      logger: opts.logger,
    });
    this.socket = this.link.socket;
    this.link.on('connect', () => void this.handshake(++this.generation));
    this.link.on('disconnect', (reason) => this.onDisconnect(reason));
    this.link.on('refused', (err) => this.emit('refused', err));
    // Not gated on the hello ack: the master may send work before our side has read the ack.
    this.socket.on('task:assign', (payload) => {
      if (this.admits('task:assign', payload)) this.emit('assign', payload);
    });
    this.socket.on('task:cancel', (payload) => {
      if (this.admits('task:cancel', payload)) this.emit('cancel', payload);
    });
    this.socket.on('sysmsg', (m, ack) => {
      // Acknowledged on receipt: the sender learns it arrived, not what the runner made of it.
      if (typeof ack === 'function') ack();
      const parsed = sysmsgSchema.safeParse(m);
      if (parsed.success) this.emit('sysmsg', parsed.data.msg, parsed.data.from);
    });
  }

  get isReady(): boolean {
    return this.ready;
  }

  /** The highest master epoch heard (runner/epoch-fence.ts); undefined from masters without leases. */
  get epoch(): number | undefined {
    return this.fence.highest;
  }

  /** The master connected to, or being tried. */
  get master(): string {
    return this.link.url;
  }

  open(): void {
    this.link.open();
  }

  close(): void {
    this.ready = false;
    this.generation++;
    if (this.helloTimer) clearTimeout(this.helloTimer);
    this.link.close();
  }

  /** Tells the master to send no new work (shutdown). */
  draining(): void {
    if (this.ready) this.socket.emit('runner:draining');
  }

  /** Gives attempts back to the master unfinished, so it requeues them at once. */
  async release(tasks: AttemptRef[]): Promise<number> {
    if (!this.ready || tasks.length === 0) return 0;
    const reply = await this.socket.timeout(this.opts.ackTimeoutMs).emitWithAck('task:release', { tasks });
    return releaseReplySchema.parse(reply).released;
  }

  started(tasks: AttemptRef[]): void {
    if (this.ready && tasks.length) this.socket.emit('task:started', { tasks });
  }

  progress(p: Progress): void {
    if (this.ready) this.socket.emit('task:progress', p);
  }

  modules(modules: ModuleInfo[]): void {
    if (this.ready) this.socket.emit('runner:modules', { modules });
  }

  /** Sends results, and the start of the attempts in `started` (an older master ignores those). */
  async results(results: AttemptResult[], started: AttemptRef[] = []): Promise<ResultsAck> {
    if (!this.ready) throw new Error('not connected to the master');
    const payload = started.length > 0 ? { results, started } : { results };
    const reply = await this.socket.timeout(this.opts.ackTimeoutMs).emitWithAck('task:results', payload);
    return resultsAckSchema.parse(reply);
  }

  /** Relays a task's `this.add(tasks)`; waits for the connection (within the ack timeout) if it is down. */
  async add(req: AddRequest): Promise<AddReply> {
    if (!this.ready) await this.whenReady(this.opts.ackTimeoutMs);
    const reply = await this.socket.timeout(this.opts.ackTimeoutMs).emitWithAck('tasks:add', req);
    return addReplySchema.parse(reply);
  }

  /** Sends a system message to the master ('MASTER'), everybody (null) or one client by id. */
  async sysmsg(msg: unknown, to: string | null): Promise<SysmsgReply> {
    if (!this.ready) await this.whenReady(this.opts.ackTimeoutMs);
    const reply = await this.socket.timeout(this.opts.ackTimeoutMs).emitWithAck('sysmsg:send', { msg, to });
    return sysmsgReplySchema.parse(reply);
  }

  private whenReady(timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.off('ready', onReady);
        reject(new Error(`not connected to the master within ${timeoutMs} ms`));
      }, timeoutMs);
      const onReady = () => {
        clearTimeout(timer);
        resolve();
      };
      this.once('ready', onReady);
    });
  }

  private async handshake(gen: number): Promise<void> {
    const log = this.opts.logger;
    for (let attempt = 0; gen === this.generation && this.socket.connected; attempt++) {
      try {
        const raw = await this.socket
          .timeout(this.opts.ackTimeoutMs)
          .emitWithAck('runner:hello', this.opts.hello());
        if (gen !== this.generation) return;
        const reply = helloReplySchema.parse(raw);
        if (!reply.ok && reply.error.code === 'ERUNNERID') {
          // Our id is still held by a connection the master has not seen close yet (ours, lost a
          // moment ago, until its ping times out): not fatal, try again shortly.
          log.warn('runner id still held on the master; retrying', { error: reply.error.message });
          throw new Error(reply.error.message);
        }
        if (!reply.ok) {
          log.error('the master refused the hello', { error: reply.error });
          this.emit('refused', toError(reply.error));
          return;
        }
        const fenced = this.fence.check(reply.epoch);
        if (!fenced.ok)
          log.warn(
            `the master answered with epoch ${fenced.epoch}, older than epoch ${fenced.seen} heard before: ` +
              'it has been replaced, and its assignments and cancels are refused (ESTALE)',
            { master: this.link.url },
          );
        this.ready = true;
        this.maxMessageBytes = reply.limits?.maxMessageBytes;
        log.info('connected to the master', {
          master: this.link.url,
          drop: reply.drop.length,
          ...(reply.epoch !== undefined ? { epoch: reply.epoch } : {}),
        });
        this.emit('ready', reply.drop);
        return;
      } catch (err) {
        if (gen !== this.generation) return;
        const delay = backoffDelay(attempt, {
          base: this.opts.reconnectDelayMs,
          cap: this.opts.reconnectDelayMaxMs,
        });
        log.warn('hello not acknowledged; retrying', { error: (err as Error).message, retryInMs: delay });
        await new Promise((r) => (this.helloTimer = setTimeout(r, delay)));
        this.helloTimer = null;
      }
    }
  }

  /**
   * Whether an assignment or cancel may be acted on: its epoch is not older than one heard before. A
   * payload that is not an object is let through to the runner, which refuses it as malformed.
   */
  private admits(event: 'task:assign' | 'task:cancel', payload: unknown): boolean {
    if (!payload || typeof payload !== 'object') return true;
    const parsed = epochField.safeParse(payload);
    if (!parsed.success) {
      // An epoch that cannot be compared cannot be trusted either.
      this.opts.logger.warn(`malformed ${event} ignored`, {
        issues: formatIssues(parsed.error.issues, event),
      });
      return false;
    }
    const fenced = this.fence.check(parsed.data.epoch);
    if (fenced.ok) return true;
    const tasks = (payload as { tasks?: unknown }).tasks;
    this.opts.logger.warn(
      `${event} refused (ESTALE): it carries epoch ${fenced.epoch}, older than epoch ${fenced.seen} heard before; ` +
        'the master that sent it has been replaced',
      {
        master: this.link.url,
        epoch: fenced.epoch,
        seenEpoch: fenced.seen,
        tasks: Array.isArray(tasks) ? tasks.length : 0,
      },
    );
    return false;
  }

  private onDisconnect(reason: string): void {
    this.generation++;
    this.ready = false;
    this.emit('down', reason);
  }
}

/** The epoch of an assignment or cancel, checked before anything else in it. */
const epochField = z.object({ epoch: assignSchema.shape.epoch });

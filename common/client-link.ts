/**
 * A client's Socket.IO link to the master, shared by the runner and the feeder: connect, reconnect
 * with backoff, a refused token, and the warnings an operator reads while the master is away.
 *
 * Socket.IO reconnects on its own after a lost transport (jittered exponential delay). It leaves
 * reconnecting to us in two cases, which the link covers with the same backoff: the master closed the
 * socket on purpose ('io server disconnect'), and a namespace middleware refused the connection.
 *
 * A refused token is recognised by its stable code: the master's middleware (master/auth.ts) sends
 * `data: { code: 'EAUTH', message }` with its connect error. A certificate that does not verify (an
 * https master signed by a CA the client was not given) is refused the same way, as ETLS. Either is
 * reported as `refused`, once per refusal; with `retryRefused` the link keeps trying (a runner
 * outlives a master restarted with another token or certificate), without it the link stops for good
 * and `whenConnected` fails at once.
 *
 * Warnings: one per outage when the master cannot be reached (with the cause; later failures at debug),
 * one per disconnect the client did not ask for. Everything a role says on top (its handshake, its
 * events) lives in that role, on `socket`.
 */
import { EventEmitter } from 'node:events';
import { io, type Socket } from 'socket.io-client';
// Socket.IO's own constraint on an event map (socket.io-client uses it without exporting it).
import type { EventsMap } from '@socket.io/component-emitter';
import { TaskmasterError } from '../protocol/errors';
import { backoffDelay } from './backoff';
import { connectCause, tlsProblem } from './connect-cause';
import type { Logger } from './logger';

export interface ClientLinkOptions {
  /** The master's base URL. */
  master: string;
  /** The namespace to join, e.g. `/runner`. */
  namespace: string;
  role: 'runner' | 'feeder';
  token?: string;
  /** CA certificates (PEM) to verify an https master with, instead of the system's: a private CA. */
  ca?: string | string[];
  reconnectDelayMs: number;
  reconnectDelayMaxMs: number;
  /** Connect at once (the feeder), or only on `open()` (the runner, once its children are up). */
  autoConnect: boolean;
  /** Keep retrying after the master refused the token. */
  retryRefused: boolean;
  logger: Logger;
}

export interface ClientLinkEvents {
  connect: [];
  disconnect: [reason: string];
  /** The master refused the token (EAUTH), or its certificate does not verify (ETLS): retrying as-is cannot help. */
  refused: [err: TaskmasterError];
}

/** What a namespace middleware's refusal carries (Socket.IO puts the error's `data` on the client's). */
type ConnectError = Error & { data?: { code?: unknown; message?: unknown } };

export class ClientLink<
  L extends EventsMap = EventsMap,
  E extends EventsMap = EventsMap,
> extends EventEmitter<ClientLinkEvents> {
  readonly socket: Socket<L, E>;
  /** Set when the master refused the token; cleared by the next connect. */
  refusal: TaskmasterError | null = null;
  /** The last connect error's message, for a timeout's explanation. */
  lastError = '';
  private retries = 0;
  private retryTimer: NodeJS.Timeout | null = null;
  /** A connection failure was logged since the last connect (one warning per outage). */
  private unreachable = false;
  /** Pending `whenConnected()` calls, failed at once by a refusal or close(). */
  private readonly waiters = new Set<(err: Error) => void>();
  private isClosed = false;

  constructor(private readonly opts: ClientLinkOptions) {
    super();
    this.socket = io(new URL(opts.namespace, opts.master).href, {
      auth: { token: opts.token, role: opts.role },
      ...(opts.ca ? { ca: opts.ca } : {}),
      autoConnect: opts.autoConnect,
      // Every client has its own connection, even several in one process (tests, the demo).
      forceNew: true,
      transports: ['websocket'],
      reconnection: true,
      reconnectionDelay: opts.reconnectDelayMs,
      reconnectionDelayMax: opts.reconnectDelayMaxMs,
      randomizationFactor: 0.5,
    }) as Socket<L, E>;
    // Socket.IO's reserved events are typed apart from the event maps: listen on the untyped view.
    const raw = this.socket as unknown as Socket;
    raw.on('connect', () => this.onConnect());
    raw.on('disconnect', (reason) => this.onDisconnect(reason));
    raw.on('connect_error', (err) => this.onConnectError(err as ConnectError));
  }

  get connected(): boolean {
    return this.socket.connected;
  }

  get closed(): boolean {
    return this.isClosed;
  }

  open(): void {
    this.socket.connect();
  }

  /** Disconnects for good; pending `whenConnected()` calls fail. Safe to call twice. */
  close(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.socket.disconnect();
    this.failWaiters(new Error(`the ${this.opts.role} was closed`));
  }

  /** Resolves once connected; rejects after `timeoutMs`, on a refusal that stops the link, or on close. */
  whenConnected(timeoutMs: number): Promise<void> {
    if (this.isClosed) return Promise.reject(new Error(`the ${this.opts.role} is closed`));
    if (this.refusal && !this.opts.retryRefused) return Promise.reject(this.refusal);
    if (this.socket.connected) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const cleanup = () => {
        clearTimeout(timer);
        this.off('connect', onConnect);
        this.waiters.delete(fail);
      };
      const fail = (err: Error) => {
        cleanup();
        reject(err);
      };
      const timer = setTimeout(() => {
        const last = this.lastError ? ` (last error: ${this.lastError})` : '';
        fail(new Error(`cannot reach the master at ${this.opts.master} within ${timeoutMs} ms${last}`));
      }, timeoutMs);
      const onConnect = () => {
        cleanup();
        resolve();
      };
      this.on('connect', onConnect);
      this.waiters.add(fail);
    });
  }

  private onConnect(): void {
    this.retries = 0;
    this.unreachable = false;
    this.refusal = null;
    this.emit('connect');
  }

  private onDisconnect(reason: string): void {
    if (reason !== 'io client disconnect') this.opts.logger.warn('disconnected from the master', { reason });
    this.emit('disconnect', reason);
    // Socket.IO leaves reconnecting to us when the master disconnected this socket on purpose; its own
    // reconnection covers lost transports (a master that restarts or dies).
    if (reason === 'io server disconnect') this.reconnectLater();
  }

  private onConnectError(err: ConnectError): void {
    if (this.isClosed) return;
    this.lastError = err.message;
    const log = this.opts.logger;
    const tls = tlsProblem(err);
    if (err.data?.code === 'EAUTH' || tls) {
      const why =
        tls ?? (typeof err.data?.message === 'string' ? err.data.message : 'missing or wrong token');
      this.refusal = tls
        ? new TaskmasterError('ETLS', `cannot connect the ${this.opts.role} to ${this.opts.master}: ${why}`)
        : new TaskmasterError(
            'EAUTH',
            `the master at ${this.opts.master} refused the ${this.opts.role}: ${why}`,
          );
      log.error(tls ? 'TLS handshake with the master failed' : 'the master refused the handshake', {
        error: this.refusal.message,
      });
      if (!this.opts.retryRefused) this.failWaiters(this.refusal);
      this.emit('refused', this.refusal);
    } else if (!this.unreachable) {
      // Once per outage, at warn: the client keeps retrying, and says why it cannot get through.
      this.unreachable = true;
      log.warn('cannot reach the master; retrying', { master: this.opts.master, cause: connectCause(err) });
    } else {
      log.debug('cannot reach the master', { master: this.opts.master, error: err.message });
    }
    // A middleware refusal stops Socket.IO's own reconnection; a transport error does not.
    if (!this.socket.active) this.reconnectLater();
  }

  private reconnectLater(): void {
    if (this.isClosed || this.retryTimer) return;
    if (this.refusal && !this.opts.retryRefused) return;
    const retry = this.retries++;
    const delay = backoffDelay(retry, {
      base: this.opts.reconnectDelayMs,
      cap: this.opts.reconnectDelayMaxMs,
    });
    this.opts.logger.debug('reconnecting to the master', { retry, delayMs: delay });
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      if (!this.isClosed && !this.socket.connected) this.socket.connect();
    }, delay);
  }

  private failWaiters(err: Error): void {
    for (const fail of [...this.waiters]) fail(err);
  }
}

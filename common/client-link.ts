/**
 * A client's Socket.IO link to the master, shared by the runner and the feeder: connect, reconnect
 * with backoff, a refused token, and the warnings an operator reads while the master is away.
 *
 * Several masters: an active one and its standbys (`master` is a list, or comma-separated URLs). The
 * link tries the first; a standby refuses the connection with ESTANDBY and the active master's URL,
 * and the link goes there (listed or not); a standby that knows no active master yet (an election),
 * a master that cannot be reached, and a lost connection send it on through the list, round and
 * round (common/master-urls.ts says the order), so a dead first URL does not hold it up. One
 * connection, re-pointed: `socket` and the listeners a role put on it stay the same across masters.
 *
 * Reconnecting is the link's alone, for every cause (a lost transport, a refusal, a master that
 * closed the socket on purpose), with one backoff: Socket.IO's own reconnection would retry the same
 * URL. The backoff grows once per round of the list, not per URL, so each master is tried as soon
 * as the one before it failed.
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
import {
  followActive,
  mastersText,
  masterUrl,
  nextMaster,
  parseMasterUrls,
  sameMaster,
  type MasterPosition,
} from './master-urls';

/** How long one connection attempt may take before the link gives it up and tries again. */
const CONNECT_TIMEOUT_MS = 5000;

export interface ClientLinkOptions {
  /** The masters' base URLs, tried in this order: a list, or one string of comma-separated URLs. */
  master: string | readonly string[];
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
type ConnectError = Error & { data?: { code?: unknown; message?: unknown; active?: unknown } };

/**
 * A standby's refusal: `active` is the active master's URL, null while none is known. Anything else
 * in `data` (a malformed URL included) is not trusted as a place to go.
 */
export function standbyRefusal(err: ConnectError): { active: string | null } | null {
  if (err.data?.code !== 'ESTANDBY') return null;
  const active = masterUrl.safeParse(err.data.active);
  return { active: active.success ? active.data : null };
}

export class ClientLink<
  L extends EventsMap = EventsMap,
  E extends EventsMap = EventsMap,
> extends EventEmitter<ClientLinkEvents> {
  readonly socket: Socket<L, E>;
  /** The masters' URLs, in the order they are tried. */
  readonly masters: readonly string[];
  /** Set when the master refused the token; cleared by the next connect. */
  refusal: TaskmasterError | null = null;
  /** The last connect error's message, for a timeout's explanation. */
  lastError = '';
  private at: MasterPosition;
  private retries = 0;
  /** Standbys followed to an active master since the last connect. */
  private redirects = 0;
  /** Active masters already announced at info (once each). */
  private readonly followed = new Set<string>();
  private retryTimer: NodeJS.Timeout | null = null;
  /** A connection failure was logged since the last connect (one warning per outage). */
  private unreachable = false;
  /** A standby without an active master was logged since the last connect (once per outage). */
  private noActive = false;
  /** Pending `whenConnected()` calls, failed at once by a refusal or close(). */
  private readonly waiters = new Set<(err: Error) => void>();
  private isClosed = false;

  constructor(private readonly opts: ClientLinkOptions) {
    super();
    this.masters = parseMasterUrls(opts.master);
    this.at = { current: this.masters[0], listed: 0 };
    this.socket = io(this.endpoint(), {
      auth: { token: opts.token, role: opts.role },
      ...(opts.ca ? { ca: opts.ca } : {}),
      autoConnect: opts.autoConnect,
      // Every client has its own connection, even several in one process (tests, the demo).
      forceNew: true,
      transports: ['websocket'],
      // The link reconnects, to this master or another (see the top of this file).
      reconnection: false,
      // A master that accepts the connection but never answers (paused, its machine frozen) is given
      // up after this long, not Socket.IO's 20 s: the next master of the list is tried sooner.
      timeout: CONNECT_TIMEOUT_MS,
    }) as Socket<L, E>;
    // Socket.IO's reserved events are typed apart from the event maps: listen on the untyped view.
    const raw = this.socket as unknown as Socket;
    raw.on('connect', () => this.onConnect());
    raw.on('disconnect', (reason) => this.onDisconnect(reason));
    raw.on('connect_error', (err) => this.onConnectError(err as ConnectError));
  }

  /** The master connected to, or being tried. */
  get url(): string {
    return this.at.current;
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
        fail(new Error(`cannot reach ${mastersText(this.masters)} within ${timeoutMs} ms${last}`));
      }, timeoutMs);
      const onConnect = () => {
        cleanup();
        resolve();
      };
      this.on('connect', onConnect);
      this.waiters.add(fail);
    });
  }

  /** The Socket.IO URL of the current master: its base URL and our namespace. */
  private endpoint(): string {
    return new URL(this.opts.namespace, this.at.current).href;
  }

  /**
   * Points the connection at the current master for its next open. Socket.IO's Manager opens each
   * transport at its `uri` (socket.io#3279, #5292 give this as the way to move a client), and it is
   * closed whenever the link reconnects, so the change takes effect there and nowhere else.
   */
  private point(): void {
    (this.socket.io as unknown as { uri: string }).uri = this.endpoint();
  }

  private onConnect(): void {
    this.retries = 0;
    this.redirects = 0;
    this.unreachable = false;
    this.noActive = false;
    this.refusal = null;
    this.emit('connect');
  }

  private onDisconnect(reason: string): void {
    if (reason === 'io client disconnect') return void this.emit('disconnect', reason);
    this.opts.logger.warn('disconnected from the master', { master: this.at.current, reason });
    this.emit('disconnect', reason);
    // The same master first: a restart or a blip is the likeliest cause; a master that stepped
    // down answers as a standby, naming the active one.
    this.reconnectLater();
  }

  private onConnectError(err: ConnectError): void {
    if (this.isClosed) return;
    this.lastError = err.message;
    const log = this.opts.logger;
    const master = this.at.current;
    const standby = standbyRefusal(err);
    const tls = tlsProblem(err);
    if (standby) return this.onStandby(master, standby.active);
    if (err.data?.code === 'EAUTH' || tls) {
      const why =
        tls ?? (typeof err.data?.message === 'string' ? err.data.message : 'missing or wrong token');
      this.refusal = tls
        ? new TaskmasterError('ETLS', `cannot connect the ${this.opts.role} to ${master}: ${why}`)
        : new TaskmasterError('EAUTH', `the master at ${master} refused the ${this.opts.role}: ${why}`);
      log.error(tls ? 'TLS handshake with the master failed' : 'the master refused the handshake', {
        error: this.refusal.message,
      });
      if (!this.opts.retryRefused) this.failWaiters(this.refusal);
      this.emit('refused', this.refusal);
      // Stopped for good: the link stays on the master that refused it, which its error names.
      if (!this.opts.retryRefused) return;
    } else if (!this.unreachable) {
      // Once per outage, at warn: the client keeps retrying, and says why it cannot get through.
      this.unreachable = true;
      const others = this.masters.length > 1 ? { masters: this.masters } : {};
      log.warn('cannot reach the master; retrying', { master, cause: connectCause(err), ...others });
    } else {
      log.debug('cannot reach the master', { master, error: err.message });
    }
    this.moveOn();
  }

  /** A standby refused us: go to the active master it names, or on through the list if it names none. */
  private onStandby(standby: string, active: string | null): void {
    const log = this.opts.logger;
    if (active === null || sameMaster(active, standby)) {
      this.lastError = `the master at ${standby} is a standby and knows no active master yet (ESTANDBY)`;
      const level = this.noActive ? 'debug' : 'info';
      this.noActive = true;
      log[level]('the master is a standby and knows no active master yet; trying the next', {
        master: standby,
      });
      return this.moveOn();
    }
    this.lastError = `the master at ${standby} is a standby; the active master is at ${active} (ESTANDBY)`;
    const level = this.followed.has(active) ? 'debug' : 'info';
    this.followed.add(active);
    log[level]('the master is a standby; following the active master', { master: standby, active });
    this.at = followActive(this.masters, this.at, active);
    // The first redirect since the last connection is followed at once; more in a row (masters that
    // name each other while an election settles) wait like any retry.
    this.reconnectLater(this.redirects++ === 0 ? 0 : undefined);
  }

  /** The current master failed: the next one, after the backoff. */
  private moveOn(): void {
    this.at = nextMaster(this.masters, this.at);
    this.reconnectLater();
  }

  private reconnectLater(delayMs?: number): void {
    if (this.isClosed || this.retryTimer) return;
    if (this.refusal && !this.opts.retryRefused) return;
    const retry = this.retries++;
    const delay =
      delayMs ??
      backoffDelay(Math.floor(retry / this.masters.length), {
        base: this.opts.reconnectDelayMs,
        cap: this.opts.reconnectDelayMaxMs,
      });
    this.opts.logger.debug('reconnecting to the master', { master: this.at.current, retry, delayMs: delay });
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      if (this.isClosed || this.socket.connected) return;
      this.point();
      this.socket.connect();
    }, delay);
  }

  private failWaiters(err: Error): void {
    for (const fail of [...this.waiters]) fail(err);
  }
}

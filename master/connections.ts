/**
 * Connection limits: every TCP connection the master accepts is counted, so that connections which
 * never become clients cannot take the descriptors the master and its honest clients need.
 *
 * A connection is a guest until it proves to be a client: an HTTP request whose headers arrived, or a
 * WebSocket that joined a namespace with a valid token (a member). Limits, each logged when it acts
 * (rate-limited, with counts):
 *   - at most `maxConnections` in all (Node's `server.maxConnections`: the rest closed on accept);
 *   - at most `maxConnectionsPerAddress` from one remote address; more are closed on accept;
 *   - guests hold at most `maxConnections - reservedConnections`: when a new connection would go
 *     beyond, the oldest idle guest (silent, a WebSocket in no namespace, or an HTTP keep-alive
 *     connection between requests) is closed to make room. The reserve is thus only ever used by members, and /health or
 *     a runner with the token gets in however many idle connections an attacker opened;
 *   - a connection silent for `handshakeTimeoutMs` (no complete request; or a WebSocket that joined
 *     no namespace with a valid token) is closed.
 * Connections are keyed by remote address and port: the same for a TLS socket and the TCP socket under
 * it, and for the HTTP request that arrives on it.
 */
import fs from 'node:fs';
import type http from 'node:http';
import type https from 'node:https';
import type net from 'node:net';
import { limitLog } from '../common/log-limit';
import type { Logger } from '../common/logger';
import { TaskmasterError } from '../protocol/errors';

export interface ConnectionLimits {
  maxConnections: number;
  maxConnectionsPerAddress: number;
  reservedConnections: number;
  handshakeTimeoutMs: number;
}

/** What the checks read of the master's options. */
type LimitOptions = ConnectionLimits & { maxBufferedBytes: number; maxMessageBytes: number };

type Stage = 'silent' | 'http' | 'upgraded' | 'member';

interface Tracked {
  socket: net.Socket;
  address: string;
  stage: Stage;
  timer: NodeJS.Timeout | null;
  /** HTTP requests being answered on it; idle between them (keep-alive) it may be evicted. */
  requests: number;
}

/** Why connections were closed by the limits, since start (for metrics and tests). */
export interface ConnectionCounts {
  open: number;
  members: number;
  refusedTotal: number;
  refusedPerAddress: number;
  evicted: number;
  silentClosed: number;
}

export class ConnectionGuard {
  /** Insertion order is age: the first evictable entry is the oldest. */
  private readonly byKey = new Map<string, Tracked>();
  /** Guests that may be evicted (silent, or a WebSocket in no namespace), oldest first. */
  private readonly evictable = new Set<Tracked>();
  private readonly perAddress = new Map<string, number>();
  private memberCount = 0;
  readonly counts = { refusedTotal: 0, refusedPerAddress: 0, evicted: 0, silentClosed: 0 };

  constructor(
    private readonly limits: ConnectionLimits,
    private readonly logger: Logger,
  ) {}

  attach(server: http.Server | https.Server): void {
    server.maxConnections = this.limits.maxConnections;
    server.on('drop', (data?: { remoteAddress?: string }) => {
      this.counts.refusedTotal++;
      limitLog(this.logger, 'warn', 'conn:total', 'connection refused: the master holds maxConnections', {
        address: data?.remoteAddress,
        maxConnections: this.limits.maxConnections,
        refused: this.counts.refusedTotal,
      });
    });
    server.on('connection', (socket: net.Socket) => this.admit(socket));
    // First, before Socket.IO or the routes see them: a request or an upgrade proves the connection
    // is not silent.
    server.prependListener('request', (req: http.IncomingMessage, res: http.ServerResponse) =>
      this.request(req, res),
    );
    server.prependListener('upgrade', (req: http.IncomingMessage) => this.advance(req.socket, 'upgraded'));
  }

  /** A WebSocket joined a namespace with a valid token: it is a client, never evicted. */
  member(socket: net.Socket | undefined): void {
    if (socket) this.advance(socket, 'member');
  }

  status(): ConnectionCounts {
    return { open: this.byKey.size, members: this.memberCount, ...this.counts };
  }

  private admit(socket: net.Socket): void {
    const address = socket.remoteAddress ?? '';
    const key = keyOf(socket);
    const fromAddress = this.perAddress.get(address) ?? 0;
    if (fromAddress >= this.limits.maxConnectionsPerAddress) {
      this.counts.refusedPerAddress++;
      limitLog(this.logger, 'warn', 'conn:address', 'connection refused: too many from one address', {
        address,
        maxConnectionsPerAddress: this.limits.maxConnectionsPerAddress,
        refused: this.counts.refusedPerAddress,
      });
      socket.destroy();
      return;
    }
    const guests = this.byKey.size - this.memberCount;
    if (guests >= this.limits.maxConnections - this.limits.reservedConnections) {
      const oldest = this.evictable.values().next().value;
      if (!oldest) {
        this.counts.refusedTotal++;
        limitLog(
          this.logger,
          'warn',
          'conn:guests',
          'connection refused: no room left for unauthenticated connections',
          {
            address,
            guests,
            maxConnections: this.limits.maxConnections,
            reservedConnections: this.limits.reservedConnections,
          },
        );
        socket.destroy();
        return;
      }
      this.counts.evicted++;
      limitLog(
        this.logger,
        'warn',
        'conn:evict',
        'connection limit reached: closed the oldest idle unauthenticated connection',
        {
          closed: oldest.address,
          address,
          evicted: this.counts.evicted,
          maxConnections: this.limits.maxConnections,
          reservedConnections: this.limits.reservedConnections,
        },
      );
      this.drop(oldest);
    }
    const t: Tracked = { socket, address, stage: 'silent', timer: null, requests: 0 };
    t.timer = setTimeout(() => this.silent(t), this.limits.handshakeTimeoutMs).unref();
    this.byKey.set(key, t);
    this.evictable.add(t);
    this.perAddress.set(address, fromAddress + 1);
    socket.once('close', () => this.forget(key, t));
  }

  /**
   * An HTTP request arrived: the connection is not silent, and is not evicted while it is answered.
   * Idle again after the answer (keep-alive), it is the newest evictable guest: connections that ask
   * once and then sit cannot hold the guests' room any more than silent ones can.
   */
  private request(req: http.IncomingMessage, res: http.ServerResponse): void {
    const t = this.byKey.get(keyOf(req.socket));
    if (!t || t.stage === 'member') return;
    this.advance(req.socket, 'http');
    t.requests++;
    this.evictable.delete(t);
    res.once('close', () => {
      if (--t.requests > 0 || t.stage !== 'http' || t.socket.destroyed) return;
      this.evictable.add(t);
    });
  }

  private advance(socket: net.Socket, stage: Stage): void {
    const t = this.byKey.get(keyOf(socket));
    if (!t || t.stage === 'member' || t.stage === stage) return;
    if (stage === 'member') {
      this.memberCount++;
      this.clearTimer(t);
      this.evictable.delete(t);
    } else if (stage === 'http') {
      // Node's headersTimeout, requestTimeout and keepAliveTimeout govern it from here.
      this.clearTimer(t);
      this.evictable.delete(t);
    }
    // 'upgraded': still evictable, and its timer still runs until it joins a namespace.
    t.stage = stage;
  }

  private silent(t: Tracked): void {
    t.timer = null;
    if (t.stage === 'member' || t.stage === 'http') return;
    this.counts.silentClosed++;
    limitLog(this.logger, 'info', 'conn:silent', 'closed a connection that did not become a client in time', {
      address: t.address,
      stage: t.stage,
      handshakeTimeoutMs: this.limits.handshakeTimeoutMs,
      closed: this.counts.silentClosed,
    });
    this.drop(t);
  }

  private drop(t: Tracked): void {
    this.evictable.delete(t);
    this.clearTimer(t);
    t.socket.destroy();
  }

  private forget(key: string, t: Tracked): void {
    this.clearTimer(t);
    this.evictable.delete(t);
    if (this.byKey.get(key) === t) this.byKey.delete(key);
    if (t.stage === 'member') this.memberCount--;
    const n = (this.perAddress.get(t.address) ?? 1) - 1;
    if (n > 0) this.perAddress.set(t.address, n);
    else this.perAddress.delete(t.address);
  }

  private clearTimer(t: Tracked): void {
    if (t.timer) clearTimeout(t.timer);
    t.timer = null;
  }
}

/** The connection limits are whole numbers, and the reserve leaves room for unauthenticated clients. */
export function checkConnectionLimits(o: LimitOptions): void {
  for (const key of ['maxConnections', 'maxConnectionsPerAddress', 'reservedConnections'] as const) {
    if (!Number.isInteger(o[key]) || o[key] < (key === 'reservedConnections' ? 0 : 1))
      throw new TaskmasterError('EVALIDATION', `${key}: must be a whole number (got ${o[key]})`);
  }
  if (!Number.isInteger(o.maxBufferedBytes) || o.maxBufferedBytes < o.maxMessageBytes)
    throw new TaskmasterError(
      'EVALIDATION',
      `maxBufferedBytes: must be a whole number of at least maxMessageBytes (${o.maxMessageBytes}); got ${o.maxBufferedBytes}`,
    );
  if (o.reservedConnections >= o.maxConnections)
    throw new TaskmasterError(
      'EVALIDATION',
      `reservedConnections (${o.reservedConnections}) must be less than maxConnections (${o.maxConnections})`,
    );
}

/**
 * `max`, lowered to the process's open-file limit less 256 (Linux's /proc/self/limits): connections
 * beyond what the process may open would fail in accept(), unlogged, and take /health with them.
 */
function fitDescriptors(max: number, logger: Logger): number {
  let limit: number | undefined;
  try {
    const m = /^Max open files\s+(\d+)/m.exec(fs.readFileSync('/proc/self/limits', 'utf8'));
    if (m) limit = Number(m[1]);
  } catch {
    return max; // not Linux: the operator's value stands
  }
  if (limit === undefined || max <= limit - 256) return max;
  const fitted = Math.max(1, limit - 256);
  logger.warn('maxConnections lowered to fit the open-file limit', {
    maxConnections: max,
    openFileLimit: limit,
    fitted,
  });
  return fitted;
}

/**
 * The limits as they apply on this machine: `maxConnections` fitted to the open-file limit, and a
 * reserve the lowered cap cannot hold cut to a tenth of it (else guests would have no room).
 */
export function fitLimits(o: ConnectionLimits, logger: Logger): ConnectionLimits {
  const maxConnections = fitDescriptors(o.maxConnections, logger);
  const reservedConnections =
    o.reservedConnections < maxConnections ? o.reservedConnections : Math.floor(maxConnections / 10);
  return {
    maxConnections,
    reservedConnections,
    maxConnectionsPerAddress: o.maxConnectionsPerAddress,
    handshakeTimeoutMs: o.handshakeTimeoutMs,
  };
}

function keyOf(socket: net.Socket): string {
  return `${socket.remoteAddress}|${socket.remotePort}`;
}

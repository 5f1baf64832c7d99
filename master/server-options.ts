/**
 * The options of the master's edge: where it listens, who may talk to it, and how much one
 * connection may cost. Declared once (master/options.ts gathers them): flag, default and docs line
 * come from here.
 */
import { z } from 'zod';
import { REDACTED, integer, nonEmpty, option } from '../common/settings';
import { describeCertificate, type TlsPair } from './tls';

/** A secret that is set shows as set, never as itself. */
const secret = () => REDACTED;

export const SERVER_OPTIONS = {
  /** Port for Socket.IO and HTTP; 0 picks a free port. */
  port: option(integer(0, 65535), {
    flag: '--port',
    arg: '<n>',
    env: 'TASKMASTER_PORT',
    default: 3232,
    group: 'network',
    doc: 'Socket.IO and HTTP port; 0 picks a free one',
  }),
  /** Address to listen on. */
  host: option(nonEmpty(), {
    flag: '--host',
    arg: '<address>',
    env: 'TASKMASTER_HOST',
    default: '127.0.0.1',
    group: 'network',
    doc: 'address to listen on',
  }),
  /**
   * The URL clients reach this master at, as a standby names the active master to them (ESTANDBY)
   * and `/health` shows it. Unset: `http(s)://<host>:<port>` (127.0.0.1 for 0.0.0.0), right only when
   * clients run on the same machine.
   */
  advertiseUrl: option(
    z
      .string()
      .url('must be a URL such as http://master-a:3232')
      .regex(/^https?:\/\//, 'must be an http:// or https:// URL'),
    {
      flag: '--advertise-url',
      arg: '<url>',
      env: 'TASKMASTER_ADVERTISE_URL',
      defaultText: 'http(s)://<host>:<port>',
      group: 'network',
      doc: 'URL clients reach this master at (a standby sends them to the active one by it)',
    },
  ),
  /** Shared secret runners and feeders must present in the handshake. */
  token: option(nonEmpty(), {
    flag: '--token',
    arg: '<secret>',
    env: 'TASKMASTER_TOKEN',
    group: 'network',
    doc: 'token runners, feeders and HTTP clients must present',
    redact: secret,
  }),
  /**
   * A second secret that opens the HTTP API's GET routes (status, runners, allocations, config) and
   * nothing that acts: for dashboards.
   */
  readToken: option(nonEmpty(), {
    flag: '--read-token',
    arg: '<secret>',
    env: 'TASKMASTER_READ_TOKEN',
    group: 'network',
    doc: 'token for the GET routes only (status, runners, config): can see, not act',
    redact: secret,
  }),
  /** Allow listening on a non-loopback address without TLS and a token. */
  insecure: option(z.boolean(), {
    flag: '--insecure',
    default: false,
    defaultText: 'refused',
    group: 'network',
    doc: 'listen on a non-loopback address without TLS and a token',
  }),
  /**
   * Serve HTTPS and WSS with this certificate (chain) and key, PEM; `url` then says https.
   * `setTls()` swaps them for new connections. The CLI reads them from `--tls-cert` and `--tls-key`.
   */
  tls: option(z.custom<TlsPair>(), {
    defaultText: 'none: HTTP',
    group: 'network',
    doc: 'certificate (chain) and key, PEM, for HTTPS and WSS; the CLI reads them from `--tls-cert` and `--tls-key`',
    redact: (pair) => ({ certificate: describeCertificate(pair.cert), key: REDACTED }),
  }),
  /**
   * Browser origins (`https://dash.example:8443`) allowed to call the HTTP API and open sockets,
   * besides the master's own. Requests from any other Origin are refused, token or not.
   */
  allowOrigins: option(
    z.array(z.string().regex(/^https?:\/\/[^/\s]+$/, 'must be an origin such as https://dash.example:8443')),
    {
      flag: '--allow-origin',
      arg: '<origin>',
      repeatable: true,
      default: [],
      defaultText: "none: only the master's own",
      group: 'network',
      doc: "browser origin allowed besides the master's own; repeatable",
    },
  ),
  /**
   * Largest Socket.IO message in bytes. It applies before the token check, so it bounds what an
   * unauthenticated client can make the master buffer; feeders split larger batches, runners fail
   * larger results with ETOOLARGE.
   */
  maxMessageBytes: option(integer(64 * 1024, 256 * 1024 * 1024), {
    flag: '--max-message-bytes',
    arg: '<n>',
    default: 1024 * 1024,
    defaultText: '1 MiB (1,048,576)',
    group: 'limits',
    doc: 'largest Socket.IO message, checked before the token',
  }),
  /**
   * Bytes the master holds for one connection that does not read them (a paused dashboard, a wedged
   * client): beyond it the connection is closed and the log says so. At least `maxMessageBytes`.
   * The worst case in all is this times the connections held. Unset, twice `maxMessageBytes` when
   * that is more than the default.
   */
  maxBufferedBytes: option(integer(64 * 1024, 4 * 1024 * 1024 * 1024), {
    flag: '--max-buffered-bytes',
    arg: '<n>',
    default: 8 * 1024 * 1024,
    defaultText: '8 MiB (8,388,608), or twice the message limit',
    group: 'limits',
    doc: 'bytes held for one connection that does not read; beyond, it is closed (at least `--max-message-bytes`)',
  }),
  /**
   * TCP connections held at once, clients and not; beyond it a new connection is closed on accept.
   * Keep it under the process's open-file limit (`ulimit -n`): on Linux it is lowered at start to
   * that limit less 256 (for the database, files and logs).
   */
  maxConnections: option(integer(1, 10_000_000), {
    flag: '--max-connections',
    arg: '<n>',
    default: 10_000,
    defaultText: '10,000, at most the open-file limit less 256',
    group: 'limits',
    doc: 'TCP connections held at once',
  }),
  /** Connections from one remote address; more are closed on accept (a NAT counts as one). */
  maxConnectionsPerAddress: option(integer(1, 10_000_000), {
    flag: '--max-connections-per-address',
    arg: '<n>',
    default: 1000,
    group: 'limits',
    doc: 'TCP connections from one remote address',
  }),
  /**
   * Of `maxConnections`, how many only clients that authenticated (and HTTP requests) may use: when
   * unauthenticated connections would take more, the oldest idle one is closed to make room.
   */
  reservedConnections: option(integer(0, 10_000_000), {
    flag: '--reserved-connections',
    arg: '<n>',
    default: 100,
    group: 'limits',
    doc: 'of `--max-connections`, how many unauthenticated connections may not take',
  }),
  /**
   * A connection must send a complete HTTP request, or its WebSocket join a namespace with a valid
   * token, within this long; else it is closed. Also the limit for an HTTP request's headers.
   */
  handshakeTimeoutMs: option(integer(100, 600_000), {
    flag: '--handshake-timeout',
    arg: '<ms>',
    default: 5000,
    group: 'limits',
    doc: 'a connection with no complete request, or no namespace joined with the token, is closed after this',
  }),
  /**
   * Task ids one feeder connection may watch at once: those it added and those it asked for with
   * `tasks:watch`, until their outcomes are delivered. An add or a watch beyond it is refused with
   * EVALIDATION naming this setting (nothing is stored).
   */
  maxWatched: option(integer(1, 100_000_000), {
    flag: '--max-watched',
    arg: '<n>',
    default: 1_000_000,
    group: 'limits',
    doc: 'task ids one feeder connection may watch at once (`EVALIDATION` beyond)',
  }),
  /**
   * Reads of the tasks that may scan them (the API's task lists with filters, a batch not in memory,
   * its graph or failures) allowed at once; one more is refused with 503 EBUSY. On FerretDB such a
   * read reads every task, beside the writes that make adds and outcomes durable.
   */
  maxScans: option(integer(1, 1000), {
    flag: '--max-scans',
    arg: '<n>',
    default: 2,
    group: 'limits',
    doc: 'reads that scan the stored tasks (lists with filters, batches not in memory) at once; more are refused (`EBUSY`)',
  }),
  /**
   * One active master per database: the active one renews a lease document every `leaseMs`/5 and
   * writes nothing once 60 % of it passed without a renewal; every other master on the database stands
   * by and takes over once the lease stood still this long (master/lease.ts).
   */
  leaseMs: option(integer(100, 3_600_000), {
    flag: '--lease-ms',
    arg: '<ms>',
    default: 10_000,
    group: 'recovery',
    doc: 'one active master per database: a standby takes over a master silent this long',
  }),
  /**
   * Announce this master in UDP datagrams for runners and feeders started with `--discover`
   * (SuperCluster's discovery). `address` defaults to 127.255.255.255 (this machine only): set your
   * subnet's broadcast address to reach other machines.
   */
  announce: option(
    z.custom<{ address?: string; port?: number; intervalMs?: number; data?: Record<string, unknown> }>(),
    {
      defaultText: 'off',
      group: 'discovery',
      doc: 'announce over UDP: `{ address?, port?, intervalMs?, data? }`; the CLI sets it with `--announce`',
    },
  ),
};

/**
 * The master's options: a documented interface with defaults, validated once at start-up
 * (master/config.ts turns flags and environment into these).
 */
import type { Logger } from '../common/logger';
import { DEFAULT_MAX_DEPENDENCY_BYTES } from './scheduler/dependency-results';
import type { RunnerEntry } from './scheduler/runner-registry';
import type { TaskRecord } from './task-record';
import type { TlsPair } from './tls';

export interface MasterOptions {
  /** MongoDB URL (any MongoDB-wire server). Required. */
  mongoUrl: string;
  /** Database name; overrides the one in the URL. Default: the URL's, or `taskmaster`. */
  dbName?: string;
  /** Port for Socket.IO and HTTP. Default 3232; 0 picks a free port. */
  port?: number;
  /** Address to listen on. Default `127.0.0.1`. */
  host?: string;
  /** Shared secret runners and feeders must present in the handshake. Default: none. */
  token?: string;
  /**
   * A second secret that opens the HTTP API's GET routes (status, runners, allocations) and nothing
   * that acts: for dashboards. Default: none.
   */
  readToken?: string;
  /**
   * Browser origins (`https://dash.example:8443`) allowed to call the HTTP API and open sockets,
   * besides the master's own. Requests from any other Origin are refused, token or not. Default none.
   */
  allowOrigins?: string[];
  /**
   * Largest Socket.IO message in bytes. It applies before the token check, so it bounds what an
   * unauthenticated client can make the master buffer; feeders split larger batches, runners fail
   * larger results with ETOOLARGE. Default 1 MB.
   */
  maxMessageBytes?: number;
  /**
   * Largest task (its JSON) an add accepts; a larger one is refused with EVALIDATION naming it. At
   * most what one message carries. Default: `maxMessageBytes` less 16 KiB of envelope (1,032,192 bytes).
   */
  maxTaskBytes?: number;
  /**
   * Largest payload of dependency results a task is given (`this.dependencies`, as JSON): results are
   * taken in the order the task names its dependencies, and one that does not fit is left out — the
   * task gets ETOOLARGE naming this setting if it reads it. At most `maxMessageBytes`. Default 256 KB.
   */
  maxDependencyBytes?: number;
  /**
   * TCP connections held at once, clients and not; beyond it a new connection is closed on accept.
   * Keep it under the process's open-file limit (`ulimit -n`): on Linux it is lowered at start to
   * that limit less 256 (for the database, files and logs). Default 10,000.
   */
  maxConnections?: number;
  /** Connections from one remote address; more are closed on accept (a NAT counts as one). Default 1000. */
  maxConnectionsPerAddress?: number;
  /**
   * Of `maxConnections`, how many only clients that authenticated (and HTTP requests) may use: when
   * unauthenticated connections would take more, the oldest idle one is closed to make room. Default 100.
   */
  reservedConnections?: number;
  /**
   * A connection must send a complete HTTP request, or its WebSocket join a namespace with a valid
   * token, within this long; else it is closed. Also the limit for an HTTP request's headers.
   * Default 5000 ms.
   */
  handshakeTimeoutMs?: number;
  /**
   * Bytes the master holds for one connection that does not read them (a paused dashboard, a wedged
   * client): beyond it the connection is closed and the log says so. At least `maxMessageBytes`.
   * The worst case in all is this times the connections held. Default 8 MiB, or twice
   * `maxMessageBytes` when that is more.
   */
  maxBufferedBytes?: number;
  /** Allow listening on a non-loopback address without TLS and a token. Default false. */
  insecure?: boolean;
  /**
   * Serve HTTPS and WSS with this certificate (chain) and key, PEM; `url` then says https.
   * `setTls()` swaps them for new connections. Default: none (HTTP).
   */
  tls?: TlsPair;
  /** Attempts per task unless the task says otherwise. Default 3. */
  maxAttempts?: number;
  /**
   * The `runTimeout` (ms) of an attempt whose task sets none, applied when it is assigned: it fails
   * with ETO (and is retried) after this long. Default: none, so such a task may run forever.
   */
  defaultRunTimeout?: number;
  /**
   * The master's own run timeout: an attempt with a run timeout whose runner reports nothing for that
   * long plus this grace after it was assigned fails with ETO, exactly as if the runner had reported
   * it (counted, retried by the policy), and the runner is told to cancel it. Covers a runner that
   * is connected but wedged. Default 30000 ms.
   */
  runTimeoutGraceMs?: number;
  /**
   * After a start, how long tasks found assigned or running wait for their runner to report them
   * before they are requeued (uncounted), counted from when the master accepts connections; the wait
   * ends early once every runner that held one has reconnected. Longer than a runner's longest
   * reconnect delay (5 s by default). Default 10000 ms.
   */
  recoveryGraceMs?: number;
  /** How long a disconnected runner's tasks wait for it to come back before they are requeued. Default 2000 ms. */
  disconnectGraceMs?: number;
  /** Largest number of documents in one insert command. Default 1000. */
  writeChunk?: number;
  /**
   * Remove final tasks this long after they finished; their ids
   * can then be used again. `null` keeps them forever. Default 7 days.
   */
  retainMs?: number | null;
  /** Keep at most this many final tasks, the newest (an alternative or addition to `retainMs`). Default: no limit. */
  retainCount?: number | null;
  /**
   * Changes waiting to be folded into `tasks` above which new assignments wait for the folder to
   * catch up, so `tasks` never falls far behind. Default 50,000.
   */
  foldBacklogLimit?: number;
  /**
   * Keep priority guarantees strictly: work above its range's guarantee only takes slots from the
   * lowest range (proletariat's SACRED_GUARANTEES). Default false.
   */
  sacredGuarantees?: boolean;
  /**
   * Chooses the runner for a task among those that can take it now (proletariat's workSelectWorker).
   * Default: the runner with the most free slots.
   */
  selectRunner?: (task: TaskRecord, runners: RunnerEntry[]) => RunnerEntry | undefined;
  /** Waiting and ready tasks allowed at once; an add beyond it is refused with EQUEUEFULL and a retry-after hint. Default 1,000,000. */
  queueLimit?: number;
  /**
   * Bytes of the tasks the master holds in memory (every task not final, its params and fields as
   * JSON) allowed at once: `queueLimit` counts tasks, and a million large ones would not fit in
   * memory. An add beyond it is refused with EQUEUEFULL naming this setting and a retry-after hint.
   * Default 1 GiB.
   */
  queueLimitBytes?: number;
  /**
   * Task ids one feeder connection may watch at once: those it added and those it asked for with
   * `tasks:watch`, until their outcomes are delivered. An add or a watch beyond it is refused with
   * EVALIDATION naming this setting (nothing is stored). Default 1,000,000.
   */
  maxWatched?: number;
  /**
   * Tasks whose add is not durable yet (so not acknowledged) allowed at once; an add beyond it is
   * refused with EQUEUEFULL naming why the database is behind. It bounds the master's memory while
   * the database is slow, frozen or its disk full. One add is always taken when none waits, whatever
   * its size. Default 20,000.
   */
  writeBacklogLimit?: number;
  /**
   * Reads of the tasks that may scan them (the API's task lists with filters, a batch not in memory,
   * its graph or failures) allowed at once; one more is refused with 503 EBUSY. On FerretDB such a
   * read reads every task, beside the writes that make adds and outcomes durable. Default 2.
   */
  maxScans?: number;
  /** Run one task per `key` at a time; tasks with the key of a running task are held and get its outcome (proletariat's HOLDSIMILARWORK). Default false. */
  holdSimilarWork?: boolean;
  /** Delay before a retry, unless a task sets `backoff`. Default: none (retry at once). */
  retryBackoff?: { type: 'fixed' | 'exponential'; delay: number; maxDelay?: number; jitter?: boolean };
  /** How often global and assign timeouts are checked, in ms. Default 50. */
  timeoutSweepMs?: number;
  /**
   * How long the master waits after a change (a new task, a free slot) before it distributes, to
   * gather more changes into one pass (proletariat's DISTRIB_RANDMAX played this role). Default 0:
   * on the next tick, which already batches everything that happened in the current one.
   */
  distributeDelayMs?: number;
  /**
   * Chooses the runner a new affinity key is allocated to, among the available runner ids (sorted);
   * atributo's `_allocate`. Default: the key's SHA-256, as a 32-bit integer, modulo their number.
   */
  allocate?: (key: string, runnerIds: string[]) => string | undefined;
  /**
   * Announce this master in UDP datagrams for runners and feeders started with `--discover`
   * (SuperCluster's discovery). Off by default. `address` defaults to 127.255.255.255 (this machine
   * only): set your subnet's broadcast address to reach other machines.
   */
  announce?: { address?: string; port?: number; intervalMs?: number; data?: Record<string, unknown> };
  /**
   * One master per database: the running one beats on a lease document; a second master started on
   * the same database refuses to start (EMASTERHELD). A master that stopped beating this long ago
   * (killed on another machine) is taken over. Default 10000 ms.
   */
  leaseMs?: number;
  logger?: Logger;
}

export type MasterDefaults = Required<
  Pick<
    MasterOptions,
    | 'port'
    | 'host'
    | 'maxAttempts'
    | 'recoveryGraceMs'
    | 'disconnectGraceMs'
    | 'writeChunk'
    | 'retainMs'
    | 'retainCount'
    | 'foldBacklogLimit'
    | 'queueLimit'
    | 'queueLimitBytes'
    | 'maxWatched'
    | 'writeBacklogLimit'
    | 'maxScans'
    | 'holdSimilarWork'
    | 'retryBackoff'
    | 'timeoutSweepMs'
    | 'distributeDelayMs'
    | 'allowOrigins'
    | 'maxMessageBytes'
    | 'leaseMs'
    | 'maxDependencyBytes'
    | 'maxConnections'
    | 'maxConnectionsPerAddress'
    | 'reservedConnections'
    | 'handshakeTimeoutMs'
    | 'runTimeoutGraceMs'
    | 'maxBufferedBytes'
  >
>;

export const MASTER_DEFAULTS: Readonly<MasterDefaults> = Object.freeze({
  port: 3232,
  host: '127.0.0.1',
  maxAttempts: 3,
  recoveryGraceMs: 10_000,
  disconnectGraceMs: 2000,
  writeChunk: 1000,
  retainMs: 7 * 24 * 3600 * 1000,
  retainCount: null,
  foldBacklogLimit: 50_000,
  queueLimit: 1_000_000,
  queueLimitBytes: 1024 * 1024 * 1024,
  maxWatched: 1_000_000,
  writeBacklogLimit: 20_000,
  maxScans: 2,
  holdSimilarWork: false,
  retryBackoff: { type: 'exponential' as const, delay: 0 },
  timeoutSweepMs: 50,
  distributeDelayMs: 0,
  allowOrigins: [],
  maxMessageBytes: 1024 * 1024,
  leaseMs: 10_000,
  maxDependencyBytes: DEFAULT_MAX_DEPENDENCY_BYTES,
  maxConnections: 10_000,
  maxConnectionsPerAddress: 1000,
  reservedConnections: 100,
  handshakeTimeoutMs: 5000,
  runTimeoutGraceMs: 30_000,
  maxBufferedBytes: 8 * 1024 * 1024,
});

/**
 * The master's settings from flags and the environment, read in this one place and validated once:
 * flags win over environment variables (MONGO_URL, TASKMASTER_DATA, TASKMASTER_PORT, TASKMASTER_HOST,
 * TASKMASTER_TOKEN, TASKMASTER_TLS_CERT, TASKMASTER_TLS_KEY, TASKMASTER_QUEUE_LIMIT,
 * TASKMASTER_LOG_FORMAT, TASKMASTER_LOG_LEVEL), which win over MASTER_DEFAULTS.
 *
 * Beyond loopback the master needs TLS and a token, or `--insecure`: without TLS the token, and every
 * task, crosses the network in clear text, and whoever reads the token can run tasks on every runner.
 * A deployment that had a token but no TLS is refused too, with the two ways on (a certificate, or
 * `--insecure` behind a proxy that terminates TLS or on a trusted network): a warning would leave the
 * token exposed in every log nobody reads.
 */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { z } from 'zod';
import {
  LOG_SETTINGS,
  integer,
  nonEmpty,
  readSettings,
  settingsError,
  type LogSettings,
} from '../common/settings';
import { MAX_TIMER_MS } from '../protocol/schemas';
import { MASTER_DEFAULTS, type MasterOptions } from './options';
import { tlsPairIssue, type TlsPair } from './tls';

/** Shortest token accepted when the master listens beyond loopback (it could be guessed). */
export const MIN_TOKEN_LENGTH = 16;

/** The flags of `taskmaster master`, as commander gives them (text until validated). */
export interface MasterFlags {
  port?: string;
  host?: string;
  token?: string;
  readToken?: string;
  allowOrigin?: string[];
  maxMessageBytes?: string;
  maxTaskBytes?: string;
  maxDependencyBytes?: string;
  maxConnections?: string;
  maxConnectionsPerAddress?: string;
  reservedConnections?: string;
  handshakeTimeout?: string;
  runTimeoutGrace?: string;
  maxBufferedBytes?: string;
  insecure?: boolean;
  tlsCert?: string;
  tlsKey?: string;
  mongoUrl?: string;
  data?: string;
  db?: string;
  maxAttempts?: string;
  defaultRunTimeout?: string;
  queueLimit?: string;
  queueLimitBytes?: string;
  maxWatched?: string;
  writeBacklogLimit?: string;
  maxScans?: string;
  distributeDelay?: string;
  recoveryGrace?: string;
  leaseMs?: string;
  disconnectGrace?: string;
  sacredGuarantees?: boolean;
  holdSimilarWork?: boolean;
  retain?: string;
  retainCount?: string;
  logFormat?: string;
  logLevel?: string;
}

export interface MasterConfig {
  /** Complete but for `mongoUrl` when none was given: the CLI then resolves a database. */
  options: Omit<MasterOptions, 'mongoUrl' | 'logger'> & { mongoUrl?: string };
  /** The embedded database's folder when `mongoUrl` is absent; absent: db/server.ts's default. */
  dataDir?: string;
  /** The certificate and key files behind `options.tls`, read again on SIGHUP. */
  tlsFiles?: { cert: string; key: string };
  log: LogSettings;
}

const SETTINGS = {
  port: { flag: '--port', env: 'TASKMASTER_PORT', schema: integer(0, 65535) },
  host: { flag: '--host', env: 'TASKMASTER_HOST', schema: nonEmpty() },
  token: { flag: '--token', env: 'TASKMASTER_TOKEN', schema: nonEmpty() },
  readToken: { flag: '--read-token', env: 'TASKMASTER_READ_TOKEN', schema: nonEmpty() },
  allowOrigin: {
    flag: '--allow-origin',
    schema: z.array(
      z.string().regex(/^https?:\/\/[^/\s]+$/, 'must be an origin such as https://dash.example:8443'),
    ),
  },
  maxMessageBytes: { flag: '--max-message-bytes', schema: integer(64 * 1024, 256 * 1024 * 1024) },
  maxTaskBytes: { flag: '--max-task-bytes', schema: integer(1024, 16 * 1024 * 1024) },
  maxDependencyBytes: { flag: '--max-dependency-bytes', schema: integer(0, 256 * 1024 * 1024) },
  maxBufferedBytes: { flag: '--max-buffered-bytes', schema: integer(64 * 1024, 4 * 1024 * 1024 * 1024) },
  maxConnections: { flag: '--max-connections', schema: integer(1, 10_000_000) },
  maxConnectionsPerAddress: { flag: '--max-connections-per-address', schema: integer(1, 10_000_000) },
  reservedConnections: { flag: '--reserved-connections', schema: integer(0, 10_000_000) },
  handshakeTimeout: { flag: '--handshake-timeout', schema: integer(100, 600_000) },
  mongoUrl: {
    flag: '--mongo-url',
    env: 'MONGO_URL',
    schema: z
      .string()
      .regex(
        /^mongodb(\+srv)?:\/\/\S+$/,
        'must be a MongoDB URL such as mongodb://127.0.0.1:27017/taskmaster',
      ),
  },
  data: { flag: '--data', env: 'TASKMASTER_DATA', schema: nonEmpty() },
  db: {
    flag: '--db',
    schema: z
      .string()
      .regex(/^[^/\\. "$*<>:|?]{1,63}$/, 'must be a database name (no spaces, dots or slashes)'),
  },
  maxAttempts: { flag: '--max-attempts', schema: integer(1, 1000) },
  defaultRunTimeout: {
    flag: '--default-run-timeout',
    schema: duration().pipe(
      z.number().min(1, 'must be at least 1 ms').max(MAX_TIMER_MS, `must be at most ${MAX_TIMER_MS} ms`),
    ),
  },
  runTimeoutGrace: { flag: '--run-timeout-grace', schema: integer(0, 3_600_000) },
  queueLimit: { flag: '--queue-limit', env: 'TASKMASTER_QUEUE_LIMIT', schema: integer(1, 100_000_000) },
  queueLimitBytes: { flag: '--queue-limit-bytes', schema: integer(1024, Number.MAX_SAFE_INTEGER) },
  maxWatched: { flag: '--max-watched', schema: integer(1, 100_000_000) },
  writeBacklogLimit: { flag: '--write-backlog-limit', schema: integer(1, 100_000_000) },
  maxScans: { flag: '--max-scans', schema: integer(1, 1000) },
  distributeDelay: { flag: '--distribute-delay', schema: integer(0, 60_000) },
  recoveryGrace: { flag: '--recovery-grace', schema: integer(0, 3_600_000) },
  leaseMs: { flag: '--lease-ms', schema: integer(100, 3_600_000) },
  disconnectGrace: { flag: '--disconnect-grace', schema: integer(0, 3_600_000) },
  insecure: { flag: '--insecure', schema: z.boolean() },
  tlsCert: { flag: '--tls-cert', env: 'TASKMASTER_TLS_CERT', schema: nonEmpty() },
  tlsKey: { flag: '--tls-key', env: 'TASKMASTER_TLS_KEY', schema: nonEmpty() },
  sacredGuarantees: { flag: '--sacred-guarantees', schema: z.boolean() },
  holdSimilarWork: { flag: '--hold-similar-work', schema: z.boolean() },
  retain: { flag: '--retain', env: 'TASKMASTER_RETAIN', schema: retention() },
  retainCount: { flag: '--retain-count', schema: integer(0, 1_000_000_000) },
  ...LOG_SETTINGS,
};

export function masterConfig(flags: MasterFlags = {}, env: NodeJS.ProcessEnv = process.env): MasterConfig {
  const s = readSettings('master', SETTINGS, { ...flags }, env);
  const host = s.host ?? MASTER_DEFAULTS.host;
  if ((s.tlsCert === undefined) !== (s.tlsKey === undefined)) {
    const [missing, given] =
      s.tlsCert === undefined ? ['--tls-cert', '--tls-key'] : ['--tls-key', '--tls-cert'];
    throw settingsError('master', [
      { path: missing, message: `is needed with ${given}: TLS takes a certificate and its private key` },
    ]);
  }
  const tlsFiles =
    s.tlsCert !== undefined && s.tlsKey !== undefined
      ? { cert: path.resolve(s.tlsCert), key: path.resolve(s.tlsKey) }
      : undefined;
  const exposure = exposureIssue(host, { token: s.token !== undefined, tls: tlsFiles !== undefined });
  if (exposure && !s.insecure) throw settingsError('master', [{ path: '--host', message: exposure }]);
  const tls = tlsFiles && readTlsSettings(tlsFiles);
  // Data placed where the user did not ask would be a surprise found too late: say it at once.
  if (s.data !== undefined && s.mongoUrl !== undefined) {
    throw settingsError('master', [
      {
        path: flags.data !== undefined ? '--data' : 'TASKMASTER_DATA',
        message:
          "is the embedded database's folder, but a MongoDB is given (--mongo-url or MONGO_URL): give one or the other",
      },
    ]);
  }
  for (const [path, t] of [
    ['--token', s.token],
    ['--read-token', s.readToken],
  ] as const) {
    if (t !== undefined && !isLoopback(host) && t.length < MIN_TOKEN_LENGTH)
      throw settingsError('master', [
        { path, message: `must be at least ${MIN_TOKEN_LENGTH} characters when listening on ${host}` },
      ]);
  }
  return {
    options: {
      mongoUrl: s.mongoUrl,
      dbName: s.db,
      port: s.port ?? MASTER_DEFAULTS.port,
      host,
      token: s.token,
      readToken: s.readToken,
      allowOrigins: s.allowOrigin ?? [],
      maxMessageBytes: s.maxMessageBytes ?? MASTER_DEFAULTS.maxMessageBytes,
      maxTaskBytes: s.maxTaskBytes,
      maxDependencyBytes: s.maxDependencyBytes ?? MASTER_DEFAULTS.maxDependencyBytes,
      maxBufferedBytes: s.maxBufferedBytes,
      maxConnections: s.maxConnections ?? MASTER_DEFAULTS.maxConnections,
      maxConnectionsPerAddress: s.maxConnectionsPerAddress ?? MASTER_DEFAULTS.maxConnectionsPerAddress,
      reservedConnections: s.reservedConnections ?? MASTER_DEFAULTS.reservedConnections,
      handshakeTimeoutMs: s.handshakeTimeout ?? MASTER_DEFAULTS.handshakeTimeoutMs,
      insecure: s.insecure ?? false,
      tls,
      maxAttempts: s.maxAttempts ?? MASTER_DEFAULTS.maxAttempts,
      defaultRunTimeout: s.defaultRunTimeout,
      runTimeoutGraceMs: s.runTimeoutGrace ?? MASTER_DEFAULTS.runTimeoutGraceMs,
      queueLimit: s.queueLimit ?? MASTER_DEFAULTS.queueLimit,
      queueLimitBytes: s.queueLimitBytes ?? MASTER_DEFAULTS.queueLimitBytes,
      maxWatched: s.maxWatched ?? MASTER_DEFAULTS.maxWatched,
      writeBacklogLimit: s.writeBacklogLimit ?? MASTER_DEFAULTS.writeBacklogLimit,
      maxScans: s.maxScans ?? MASTER_DEFAULTS.maxScans,
      sacredGuarantees: s.sacredGuarantees ?? false,
      holdSimilarWork: s.holdSimilarWork ?? MASTER_DEFAULTS.holdSimilarWork,
      distributeDelayMs: s.distributeDelay ?? MASTER_DEFAULTS.distributeDelayMs,
      recoveryGraceMs: s.recoveryGrace ?? MASTER_DEFAULTS.recoveryGraceMs,
      leaseMs: s.leaseMs ?? MASTER_DEFAULTS.leaseMs,
      disconnectGraceMs: s.disconnectGrace ?? MASTER_DEFAULTS.disconnectGraceMs,
      retainMs: s.retain === undefined ? MASTER_DEFAULTS.retainMs : s.retain,
      retainCount: s.retainCount ?? MASTER_DEFAULTS.retainCount,
    },
    dataDir: s.data,
    tlsFiles,
    log: { format: s.logFormat, level: s.logLevel },
  };
}

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** `7d`, `12h`, `30m`, `90s` or a number of milliseconds, in milliseconds. */
function toMs(v: string): number {
  const m = /^(\d+)(ms|s|m|h|d)?$/.exec(v) as RegExpExecArray;
  return Number(m[1]) * UNITS[m[2] ?? 'ms'];
}

/** A duration: `12h`, `30m`, `90s`, `500ms` or a number of milliseconds. */
function duration() {
  return z
    .string()
    .regex(/^\d+(ms|s|m|h|d)?$/, 'must be a duration such as 2h, 30m, 90s or 500ms')
    .transform(toMs);
}

/** A retention period: a duration, or `forever` (null: keep). */
function retention() {
  return z
    .string()
    .regex(/^(forever|\d+(ms|s|m|h|d)?)$/, 'must be a duration such as 7d, 12h, 30m, 90s, or forever')
    .transform((v) => (v === 'forever' ? null : toMs(v)));
}

/**
 * Why a master on `host` may not listen as configured, or undefined: beyond loopback it needs TLS and a
 * token (see the top of this file).
 */
export function exposureIssue(host: string, has: { token: boolean; tls: boolean }): string | undefined {
  if (isLoopback(host) || (has.token && has.tls)) return undefined;
  const ways =
    'Give it a certificate and its key (--tls-cert, --tls-key) and a token (--token or TASKMASTER_TOKEN), ' +
    'and give runners and feeders the token and, for a private CA, --ca; ' +
    'or pass --insecure (on a network you trust, or behind a proxy that terminates TLS)';
  if (!has.token && !has.tls)
    return `refusing to listen on ${host} without TLS and a token: anyone who can reach it could add tasks to your runners, and read every task on the wire. ${ways}`;
  if (!has.tls)
    return `refusing to listen on ${host} with a token but without TLS: the token would cross the network in clear text, and whoever reads it can add tasks to your runners. ${ways}`;
  return `refusing to listen on ${host} without a token: anyone who can reach it could add tasks to your runners. ${ways}`;
}

/** The certificate and key, read and checked; a problem is a settings error naming the flag and file. */
function readTlsSettings(files: { cert: string; key: string }): TlsPair {
  const read = (file: string, flag: string): Buffer => {
    try {
      return fs.readFileSync(file);
    } catch (err) {
      throw settingsError('master', [
        { path: flag, message: `cannot read ${file} (${(err as Error).message})` },
      ]);
    }
  };
  const pair = { cert: read(files.cert, '--tls-cert'), key: read(files.key, '--tls-key') };
  const issue = tlsPairIssue(pair);
  if (issue) {
    const [flag, file] = issue.which === 'cert' ? ['--tls-cert', files.cert] : ['--tls-key', files.key];
    throw settingsError('master', [{ path: flag, message: `${file}: ${issue.message}` }]);
  }
  return pair;
}

/** 127.0.0.0/8, ::1 (also IPv4-mapped) and `localhost`; anything else may be reachable from outside. */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  if (h === 'localhost' || h.endsWith('.localhost')) return true;
  if (net.isIPv4(h)) return h.startsWith('127.');
  if (net.isIPv6(h)) {
    if (h === '::1' || h === '0:0:0:0:0:0:0:1') return true;
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(h);
    return mapped !== null && mapped[1].startsWith('127.');
  }
  return false;
}

/**
 * The database to use on `mongoUrl`: the explicit name, else the one in the URL's path, else
 * `taskmaster` (rather than the driver's `test`).
 */
export function databaseName(mongoUrl: string, explicit?: string): string {
  if (explicit) return explicit;
  const m = /^mongodb(?:\+srv)?:\/\/[^/]*\/([^?]*)/.exec(mongoUrl);
  return m && m[1] ? decodeURIComponent(m[1]) : 'taskmaster';
}

/**
 * The master's settings from flags and the environment, read in this one place and validated once:
 * flags win over environment variables, which win over MASTER_DEFAULTS. Which flags and variables
 * there are comes from the options' declarations (master/options.ts) and the few flags that build an
 * option (`MASTER_CLI_SETTINGS`).
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
  flagSettings,
  integer,
  nonEmpty,
  readSettings,
  settingsError,
  type Declarations,
  type LogSettings,
  type Setting,
  type SettingsOf,
  type ValuesOf,
} from '../common/settings';
import { MASTER_DEFAULTS, MASTER_GROUPS, MASTER_OPTIONS, type MasterOptions } from './options';
import { tlsPairIssue, type TlsPair } from './tls';

/** Shortest token accepted when the master listens beyond loopback (it could be guessed). */
export const MIN_TOKEN_LENGTH = 16;

/** The flags of `taskmaster master`, as commander gives them (text until validated). */
export type MasterFlags = Record<string, string | boolean | string[] | undefined>;

export interface MasterConfig {
  /**
   * What the flags and the environment set, the rest left to the master's defaults; `mongoUrl` is
   * absent when none was given: the CLI then resolves a database.
   */
  options: Omit<MasterOptions, 'mongoUrl' | 'logger'> & { mongoUrl?: string };
  /** The embedded database's folder when `mongoUrl` is absent; absent: db/server.ts's default. */
  dataDir?: string;
  /** The certificate and key files behind `options.tls`, read again on SIGHUP. */
  tlsFiles?: { cert: string; key: string };
  log: LogSettings;
}

/** The flags of `taskmaster master` that are no option themselves but build one (or the log). */
export const MASTER_CLI_SETTINGS = {
  data: {
    flag: '--data',
    arg: '<dir>',
    env: 'TASKMASTER_DATA',
    schema: nonEmpty(),
    group: 'database',
    defaultText: '`./.taskmaster/db`',
    doc: "without `MONGO_URL`: the embedded database's folder",
  },
  tlsCert: {
    flag: '--tls-cert',
    arg: '<file>',
    env: 'TASKMASTER_TLS_CERT',
    schema: nonEmpty(),
    group: 'network',
    defaultText: 'none: HTTP',
    doc: 'HTTPS and WSS with this PEM certificate; reread on SIGHUP',
  },
  tlsKey: {
    flag: '--tls-key',
    arg: '<file>',
    env: 'TASKMASTER_TLS_KEY',
    schema: nonEmpty(),
    group: 'network',
    defaultText: 'none',
    doc: 'the PEM private key of `--tls-cert`',
  },
  // Not `announce`: that is the option these three build.
  announcing: {
    flag: '--announce',
    schema: z.boolean(),
    group: 'discovery',
    defaultText: 'off',
    doc: 'announce the master over UDP (see [Discovery](runners.md#discovery-opt-in-after-supercluster))',
  },
  broadcastAddress: {
    flag: '--broadcast-address',
    arg: '<addr>',
    schema: nonEmpty(),
    group: 'discovery',
    defaultText: '127.255.255.255',
    doc: "where announcements go; 127.255.255.255 reaches this machine only: give the subnet's broadcast address",
  },
  discoveryPort: {
    flag: '--discovery-port',
    arg: '<n>',
    schema: integer(1, 65535),
    group: 'discovery',
    defaultText: '44201',
    doc: 'UDP port of the announcements',
  },
  ...LOG_SETTINGS,
} satisfies Record<string, Setting<unknown>>;

/**
 * Every flag of `taskmaster master`: the declared options the command line sets and the flags that
 * build one, ordered by the docs' sections (MASTER_GROUPS), declaration order within each. The
 * command's `--help`, its reading and the docs' table all take this list.
 */
export function masterSettings(
  declarations: Declarations = MASTER_OPTIONS,
): Record<string, Setting<unknown>> {
  const groups = Object.keys(MASTER_GROUPS);
  const entries = Object.entries({ ...flagSettings(declarations), ...MASTER_CLI_SETTINGS });
  for (const [key, s] of entries)
    if (!groups.includes(s.group ?? ''))
      throw new Error(`master option ${key}: group "${s.group}" is none of ${groups.join(', ')}`);
  // Array.prototype.sort is stable: declaration order holds within a group.
  entries.sort(([, a], [, b]) => groups.indexOf(a.group ?? '') - groups.indexOf(b.group ?? ''));
  return Object.fromEntries(entries);
}

/**
 * Reads `taskmaster master`'s flags and environment: every declared option given, with the checks
 * that span several (TLS, exposure, tokens, where the database is). Defaults are left to the master
 * (`{ ...MASTER_DEFAULTS, ...options }`), since some follow other options (`maxBufferedBytes`).
 */
export function masterConfig(
  flags: MasterFlags = {},
  env: NodeJS.ProcessEnv = process.env,
  declarations: Declarations = MASTER_OPTIONS,
): MasterConfig {
  const read = readSettings('master', masterSettings(declarations), flags, env);
  const s = read as SettingsOf<typeof MASTER_CLI_SETTINGS> & ValuesOf<typeof MASTER_OPTIONS>;
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
  const options: Record<string, unknown> = {};
  for (const key of Object.keys(declarations)) if (read[key] !== undefined) options[key] = read[key];
  if (tls) options.tls = tls;
  if (s.announcing) options.announce = { address: s.broadcastAddress, port: s.discoveryPort };
  return {
    options: options as MasterConfig['options'],
    dataDir: s.data,
    tlsFiles,
    log: { format: s.logFormat, level: s.logLevel },
  };
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

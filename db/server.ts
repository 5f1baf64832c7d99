/**
 * Finds a MongoDB-wire server for the CLI, the demo, the benchmark and the tests, in this order:
 *
 *   1. `MONGO_URL`, used as given (kind `external`; nothing to stop);
 *   2. a `mongod` on PATH, started on 127.0.0.1 with its data in `dataDir`;
 *   3. FerretDB with its SQLite backend, built from the Go module proxy with the project's patches
 *      into `<cache>/bin/ferretdb-<version>-p<level>` the first time (db/ferretdb-build.ts; the
 *      cache folder is db/package-root.ts's).
 *
 * A started server keeps its data in `dataDir`, by default `.taskmaster/db` under the working
 * directory: data belongs to the user's project, never to the package folder, which `npm ci`
 * deletes. Every command that starts one says where its data and its binary are (`describeDatabase`).
 *
 * A server started here holds a lock in its data directory (db/data-dir-lock.ts): a second
 * server on the same files is refused with a message naming the running one.
 *
 * A server started here runs under a small watchdog process that holds a pipe from this process and
 * stops the server when the pipe closes, so the server dies with its parent even when the parent is
 * killed with SIGKILL and has no chance to clean up. The watchdog leads its own process group: a
 * Ctrl-C in the terminal reaches the parent first, which can still flush its writes before it stops
 * the database.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import mongoose from 'mongoose';
import { lockDataDir } from './data-dir-lock';
import {
  FERRETDB_BIN,
  buildFerretDB,
  findOnPath,
  isExecutable,
  type ProgressOptions,
} from './ferretdb-build';
import { PACKAGE_ROOT } from './package-root';

export { FERRETDB_BIN, buildFerretDB };
export const REPO_ROOT = PACKAGE_ROOT;

/** Where an embedded server keeps its data unless told otherwise: `.taskmaster/db` under `cwd`. */
export function defaultDataDir(cwd: string = process.cwd()): string {
  return path.resolve(cwd, '.taskmaster', 'db');
}

export type DatabaseKind = 'ferretdb' | 'mongod' | 'external';

export interface Database {
  /** `mongodb://host:port/`; add a database name with `dbName` or by setting the URL's path. */
  url: string;
  kind: DatabaseKind;
  /** Stops a server started here; a no-op for `external`. Safe to call twice. */
  stop(): Promise<void>;
}

export interface EmbeddedDatabase extends Database {
  kind: 'ferretdb' | 'mongod';
  port: number;
  dataDir: string;
  /** The server's executable: the FerretDB build, or the mongod found on PATH. */
  bin: string;
  /** The server process (FerretDB or mongod). */
  pid: number;
}

/**
 * Where a database is, for the line every command prints when it starts one: its URL, and for a
 * server started here its data folder and its executable (`build` for FerretDB, which this package
 * built, `mongod` for the one found on PATH).
 */
export function describeDatabase(db: Database): Record<string, string> {
  if (db.kind === 'external') return { kind: db.kind, url: 'MONGO_URL' };
  const e = db as EmbeddedDatabase;
  return { kind: e.kind, url: e.url, data: e.dataDir, [e.kind === 'ferretdb' ? 'build' : 'mongod']: e.bin };
}

/** `describeDatabase` as one line: `ferretdb at mongodb://…, data in …, build in …`. */
export function databaseLine(db: Database): string {
  if (db.kind === 'external') return 'the MongoDB of MONGO_URL';
  const d = describeDatabase(db);
  const exe = d.build === undefined ? `mongod ${d.mongod}` : `build in ${d.build}`;
  return `${d.kind} at ${d.url}, data in ${d.data}, ${exe}`;
}

/**
 * SQLite's `synchronous` setting for FerretDB (journal_mode is WAL either way). `full` (the default)
 * syncs the WAL on every commit: an acknowledged write survives a power loss. `normal` syncs only at
 * checkpoints: an acknowledged write survives a crash of FerretDB or of the process, but the last
 * commits before a power loss or kernel crash can be lost (the database stays consistent).
 */
export type Synchronous = 'full' | 'normal';

export interface EmbeddedOptions {
  /** SQLite durability of the FerretDB backend (mongod ignores it); see {@link Synchronous}. Default `full`. */
  synchronous?: Synchronous;
  /** The FerretDB binary to run instead of the patched build (e.g. the stock one, for comparisons). */
  ferretdbBin?: string;
  /** Port on 127.0.0.1. Default 0: a free port. */
  port?: number;
  /** Where the server keeps its files; created if missing. Default `.taskmaster/db` under the working directory. */
  dataDir?: string;
  /** Where the outcome of a FerretDB build goes ("built FerretDB in 14 s"). Default: lines on stderr. */
  log?: (msg: string) => void;
  /** Where the progress line of a FerretDB build goes while it runs. Default: stderr (see ProgressOptions). */
  progress?: ProgressOptions;
  /** How long the server may take to accept a ping. Default 30000 ms. */
  startTimeoutMs?: number;
  /** How long `stop()` waits after SIGTERM before SIGKILL. Default 10000 ms. */
  stopTimeoutMs?: number;
}

export interface ResolveOptions extends EmbeddedOptions {
  /** An existing server to use instead of starting one. Default: `MONGO_URL` from the environment. */
  mongoUrl?: string;
}

/** `MONGO_URL` if set, else an embedded server (mongod, else FerretDB). */
export async function resolveDatabase(opts: ResolveOptions = {}): Promise<Database> {
  const url = opts.mongoUrl ?? process.env.MONGO_URL;
  if (url) return { url, kind: 'external', stop: async () => {} };
  return startEmbeddedDatabase(opts);
}

/** Starts `mongod` if it is on PATH, else FerretDB (built first if needed), and waits until it answers a ping. */
export async function startEmbeddedDatabase(opts: EmbeddedOptions = {}): Promise<EmbeddedDatabase> {
  const dataDir = path.resolve(opts.dataDir ?? defaultDataDir());
  fs.mkdirSync(dataDir, { recursive: true });
  // Taken before a build that can last minutes: a second start on these files is refused at once.
  const lock = lockDataDir(dataDir);
  try {
    const db = await startServer(dataDir, opts);
    lock.update({ kind: db.kind, url: db.url, serverPid: db.pid });
    const stop = db.stop;
    return { ...db, stop: () => stop().finally(() => lock.release()) };
  } catch (err) {
    lock.release();
    throw err;
  }
}

async function startServer(dataDir: string, opts: EmbeddedOptions): Promise<EmbeddedDatabase> {
  // An explicit FerretDB binary wins over a mongod on PATH (tests and benchmarks compare builds).
  const mongod = opts.ferretdbBin ? undefined : findOnPath('mongod');
  if (mongod) {
    // mongod cannot listen on port 0 and report the port, so take a free one; another process could
    // take it in between, hence the retries.
    for (let attempt = 1; ; attempt++) {
      const port = opts.port || (await freePort());
      const args = ['--dbpath', dataDir, '--bind_ip', '127.0.0.1', '--port', String(port)];
      try {
        return await launch('mongod', mongod, args, dataDir, opts, () => port);
      } catch (err) {
        if (opts.port || attempt >= 3 || !/address already in use/i.test(String(err))) throw err;
      }
    }
  }
  if (!opts.ferretdbBin && !isExecutable(FERRETDB_BIN) && !findOnPath('go')) throw new Error(NO_DATABASE);
  const bin = opts.ferretdbBin ?? (await buildFerretDB({ log: opts.log, progress: opts.progress }));
  // FerretDB binds port 0 itself and prints the address it got: no race for a free port.
  const args = [
    '--handler=sqlite',
    `--sqlite-url=file:${dataDir}/?_pragma=synchronous(${opts.synchronous ?? 'full'})`,
    `--listen-addr=127.0.0.1:${opts.port ?? 0}`,
    '--log-level=warn',
  ];
  return launch('ferretdb', bin, args, dataDir, opts, (out) => {
    const m = /ferretdb listening mongodb:\/\/[^:\s]+:(\d+)/.exec(out);
    return m ? Number(m[1]) : undefined;
  });
}

/** A port that was free a moment ago on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

const NO_DATABASE = [
  'No MongoDB-wire server available. Any one of these provides one:',
  '  - docker compose up mongo, then MONGO_URL=mongodb://127.0.0.1:27017',
  '  - install MongoDB so that `mongod` is on PATH',
  '  - set MONGO_URL to a MongoDB you already run',
  '  - install Go (https://go.dev/dl/) so that the embedded FerretDB can be built',
].join('\n');

// Runs as `node -e WATCHDOG BIN ARGS...`: starts BIN, forwards SIGTERM/SIGINT to it, stops it when
// stdin closes (the parent is gone), SIGKILLs it when it outstays the grace period, and exits with
// its status. Plain JavaScript because it runs without any loader.
const WATCHDOG = `
const { spawn } = require('node:child_process');
const [bin, ...args] = process.argv.slice(1);
const child = spawn(bin, args, { stdio: ['ignore', 'inherit', 'inherit'] });
if (child.pid) process.stdout.write('watchdog: server pid ' + child.pid + '\\n');
let killer;
const stop = (signal) => {
  if (child.exitCode === null && child.signalCode === null) child.kill(signal);
  killer ??= setTimeout(() => child.kill('SIGKILL'), ${5_000}).unref();
};
process.on('SIGTERM', () => stop('SIGTERM'));
process.on('SIGINT', () => stop('SIGINT'));
process.stdin.on('end', () => stop('SIGTERM')).on('error', () => stop('SIGTERM')).resume();
child.on('error', (err) => { process.stderr.write(err.message + '\\n'); process.exit(127); });
child.on('exit', (code, signal) => process.exit(code ?? (signal === 'SIGTERM' || signal === 'SIGINT' ? 0 : 1)));
`;

async function launch(
  kind: 'ferretdb' | 'mongod',
  bin: string,
  args: string[],
  dataDir: string,
  opts: EmbeddedOptions,
  portFrom: (output: string) => number | undefined,
): Promise<EmbeddedDatabase> {
  const child = spawn(process.execPath, ['-e', WATCHDOG, bin, ...args], {
    stdio: ['pipe', 'pipe', 'pipe'],
    detached: true,
  });
  const output = tail(child);
  const exited = exitOf(child);
  let gone = false;
  void exited.then(() => (gone = true));

  const stopTimeoutMs = opts.stopTimeoutMs ?? 10_000;
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopping ??= (async () => {
      if (gone) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => killGroup(child), stopTimeoutMs);
      await exited;
      clearTimeout(timer);
    })());

  const startTimeoutMs = opts.startTimeoutMs ?? 30_000;
  const deadline = Date.now() + startTimeoutMs;
  let port: number | undefined;
  try {
    for (let delay = 25; ; delay = Math.min(delay * 2, 250)) {
      if (gone) {
        const [code, signal] = await exited;
        throw new Error(`${kind} exited (${code ?? signal}) before accepting connections:\n${output()}`);
      }
      port ??= portFrom(output());
      const pid = Number(/watchdog: server pid (\d+)/.exec(output())?.[1] ?? child.pid);
      if (port && (await accepts(port)) && (await pings(port))) {
        return { url: `mongodb://127.0.0.1:${port}/`, kind, port, dataDir, bin, pid, stop };
      }
      if (Date.now() > deadline) {
        throw new Error(`${kind} did not accept connections within ${startTimeoutMs} ms:\n${output()}`);
      }
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  } catch (err) {
    await stop();
    throw err;
  }
}

function killGroup(child: ChildProcess): void {
  try {
    if (child.pid) process.kill(-child.pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.setTimeout(1000);
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
    socket.once('timeout', () => done(false));
  });
}

async function pings(port: number): Promise<boolean> {
  const client = new mongoose.mongo.MongoClient(`mongodb://127.0.0.1:${port}/`, {
    directConnection: true,
    serverSelectionTimeoutMS: 2000,
  });
  try {
    await client.connect();
    await client.db('admin').command({ ping: 1 });
    return true;
  } catch {
    return false;
  } finally {
    await client.close().catch(() => {});
  }
}

/** Keeps the last few KB of a child's stdout and stderr, for error messages. */
function tail(child: ChildProcess, limit = 4096): () => string {
  let text = '';
  const keep = (chunk: Buffer) => {
    text += chunk.toString();
    if (text.length > 4 * limit) text = text.slice(-limit);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  return () => text.slice(-limit).trimEnd();
}

function exitOf(child: ChildProcess): Promise<[number | null, NodeJS.Signals | null]> {
  return new Promise((resolve) => {
    child.once('error', () => resolve([null, null]));
    child.once('exit', (code, signal) => resolve([code, signal]));
  });
}

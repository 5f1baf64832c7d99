/**
 * Finds a MongoDB-wire server for the CLI, the demo, the benchmark and the tests, in this order:
 *
 *   1. `MONGO_URL`, used as given (kind `external`; nothing to stop);
 *   2. a `mongod` on PATH, started on 127.0.0.1 with its data in `dataDir`;
 *   3. FerretDB with its SQLite backend, built from the Go module proxy into `.cache/bin/ferretdb`
 *      the first time (tools/ferretdb).
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

export const REPO_ROOT = path.resolve(__dirname, '..');
export const FERRETDB_BIN = path.join(REPO_ROOT, '.cache', 'bin', 'ferretdb');
const FERRETDB_SOURCE = path.join(REPO_ROOT, 'tools', 'ferretdb');
const DEFAULT_DATA_DIR = path.join(REPO_ROOT, '.cache', 'db');

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
}

export interface BuildOptions {
  /** Progress messages. Default: lines on stderr. */
  log?: (msg: string) => void;
  /** Rebuild even if the binary exists. Default false. */
  force?: boolean;
  /** Give up on `go build` after this many ms. Default 600000 (a cold module cache downloads ~100 modules). */
  timeoutMs?: number;
}

export interface EmbeddedOptions {
  /** Port on 127.0.0.1. Default 0: a free port. */
  port?: number;
  /** Where the server keeps its files; created if missing. Default `<repo>/.cache/db`. */
  dataDir?: string;
  /** Progress messages (building FerretDB). Default: lines on stderr. */
  log?: (msg: string) => void;
  /** How long the server may take to accept a ping. Default 30000 ms. */
  startTimeoutMs?: number;
  /** How long `stop()` waits after SIGTERM before SIGKILL. Default 10000 ms. */
  stopTimeoutMs?: number;
}

export interface ResolveOptions extends EmbeddedOptions {
  /** An existing server to use instead of starting one. Default: `MONGO_URL` from the environment. */
  mongoUrl?: string;
}

const defaultLog = (msg: string): void => void process.stderr.write(`${msg}\n`);

/** `MONGO_URL` if set, else an embedded server (mongod, else FerretDB). */
export async function resolveDatabase(opts: ResolveOptions = {}): Promise<Database> {
  const url = opts.mongoUrl ?? process.env.MONGO_URL;
  if (url) return { url, kind: 'external', stop: async () => {} };
  return startEmbeddedDatabase(opts);
}

/** Starts `mongod` if it is on PATH, else FerretDB (built first if needed), and waits until it answers a ping. */
export async function startEmbeddedDatabase(opts: EmbeddedOptions = {}): Promise<EmbeddedDatabase> {
  const dataDir = path.resolve(opts.dataDir ?? DEFAULT_DATA_DIR);
  fs.mkdirSync(dataDir, { recursive: true });
  const mongod = findOnPath('mongod');
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
  if (!isExecutable(FERRETDB_BIN) && !findOnPath('go')) throw new Error(NO_DATABASE);
  const bin = await buildFerretDB({ log: opts.log });
  // FerretDB binds port 0 itself and prints the address it got: no race for a free port.
  const args = [
    '--handler=sqlite',
    `--sqlite-url=file:${dataDir}/`,
    `--listen-addr=127.0.0.1:${opts.port ?? 0}`,
    '--log-level=warn',
  ];
  return launch('ferretdb', bin, args, dataDir, opts, (out) => {
    const m = /ferretdb listening mongodb:\/\/[^:\s]+:(\d+)/.exec(out);
    return m ? Number(m[1]) : undefined;
  });
}

/** Returns the FerretDB binary, building it with `go build` in tools/ferretdb when it is missing. */
export async function buildFerretDB(opts: BuildOptions = {}): Promise<string> {
  const log = opts.log ?? defaultLog;
  if (!opts.force && isExecutable(FERRETDB_BIN)) return FERRETDB_BIN;
  const go = findOnPath('go');
  if (!go) {
    throw new Error(
      `cannot build FerretDB: \`go\` is not on PATH. Install Go (https://go.dev/dl/) or see below.\n${NO_DATABASE}`,
    );
  }
  log(
    'building FerretDB from the Go module proxy (tools/ferretdb -> .cache/bin/ferretdb); ' +
      'this takes a minute or two the first time',
  );
  const started = Date.now();
  fs.mkdirSync(path.dirname(FERRETDB_BIN), { recursive: true });
  // Build beside the target and rename: two processes building at once never see a partial binary.
  const tmp = `${FERRETDB_BIN}.${process.pid}.tmp`;
  const child = spawn(go, ['build', '-o', tmp, '.'], {
    cwd: FERRETDB_SOURCE,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output = tail(child);
  const timeoutMs = opts.timeoutMs ?? 600_000;
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const [code, signal] = await exitOf(child).finally(() => clearTimeout(timer));
  if (code !== 0) {
    fs.rmSync(tmp, { force: true });
    const why = signal === 'SIGKILL' ? `timed out after ${timeoutMs} ms` : `exited with ${code ?? signal}`;
    throw new Error(`go build of FerretDB ${why}:\n${output()}`);
  }
  fs.renameSync(tmp, FERRETDB_BIN);
  log(`built FerretDB in ${((Date.now() - started) / 1000).toFixed(0)} s: ${FERRETDB_BIN}`);
  return FERRETDB_BIN;
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
      if (port && (await accepts(port)) && (await pings(port))) {
        return { url: `mongodb://127.0.0.1:${port}/`, kind, port, dataDir, stop };
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

function findOnPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (!dir) continue;
    const file = path.join(dir, name);
    if (isExecutable(file)) return file;
  }
  return undefined;
}

function isExecutable(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

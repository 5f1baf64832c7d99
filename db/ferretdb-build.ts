/**
 * Builds the embedded database: FerretDB 1.24.2 (tools/ferretdb, a small wrapper around its embeddable
 * package) with the patches of tools/ferretdb/patches applied, into `<cache>/bin/ferretdb-1.24.2-pN`,
 * where `<cache>` is the build cache of db/package-root.ts (a clone's `.cache`, an installed package's
 * `~/.cache/taskmaster`, or `TASKMASTER_CACHE_DIR`).
 *
 * Go refuses `-overlay` for files in the module cache, so the build copies the module out of the
 * cache into `<cache>/ferretdb-src/`, applies the patches there with `git apply`, and builds the
 * wrapper with a copy of its go.mod (`-modfile`) that adds a `replace` to that copy. The binary's
 * name carries the patch level: a machine with a binary of an older level builds the new one.
 *
 * The `stock` variant (no patches, `<cache>/bin/ferretdb-1.24.2-stock`) exists for the tests that
 * check that files written by an unpatched FerretDB are read by the patched one.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { CACHE_DIR, PACKAGE_ROOT } from './package-root';

export const FERRETDB_VERSION = '1.24.2';
/** Bump when a file in tools/ferretdb/patches (or the wrapper) changes. */
export const FERRETDB_PATCH_LEVEL = 3;

const REPO_ROOT = PACKAGE_ROOT;
const WRAPPER_DIR = path.join(REPO_ROOT, 'tools', 'ferretdb');
const PATCH_DIR = path.join(WRAPPER_DIR, 'patches');
const SOURCE_DIR = path.join(CACHE_DIR, 'ferretdb-src');
const MODULE = 'github.com/FerretDB/FerretDB';

export type FerretDBVariant = 'patched' | 'stock';

export function ferretdbBinPath(variant: FerretDBVariant = 'patched'): string {
  const suffix = variant === 'stock' ? 'stock' : `p${FERRETDB_PATCH_LEVEL}`;
  return path.join(CACHE_DIR, 'bin', `ferretdb-${FERRETDB_VERSION}-${suffix}`);
}

/** The patched binary the embedded database runs. */
export const FERRETDB_BIN = ferretdbBinPath('patched');

/** How long a build usually takes, printed when it starts. */
export const USUAL_BUILD_TIME = 'usually ~15 s with a warm Go module cache, 1–2 min cold';

export interface BuildOptions {
  /** Which binary. Default `patched`. */
  variant?: FerretDBVariant;
  /** Where the outcome ("built FerretDB in 14 s") goes. Default: a line on stderr. */
  log?: (msg: string) => void;
  /** The progress line while the build runs (see startProgress). Default: stderr. */
  progress?: ProgressOptions;
  /** Rebuild even if the binary exists. Default false. */
  force?: boolean;
  /** Give up on the build after this many ms. Default 600000 (a cold module cache downloads ~100 modules). */
  timeoutMs?: number;
}

export interface ProgressOptions {
  /** Default `process.stderr.isTTY`. */
  isTTY?: boolean;
  /** Where the progress is written. Default: stderr. */
  write?: (text: string) => void;
  /** Period of the progress lines. Default 10000 ms, or 1000 on a TTY (where the line is rewritten). */
  intervalMs?: number;
}

const defaultLog = (msg: string): void => void process.stderr.write(`${msg}\n`);

/** Returns the FerretDB binary of that variant, building it when it is missing. */
export async function buildFerretDB(opts: BuildOptions = {}): Promise<string> {
  const variant = opts.variant ?? 'patched';
  const log = opts.log ?? defaultLog;
  const bin = ferretdbBinPath(variant);
  if (!opts.force && isExecutable(bin)) return bin;
  const go = findOnPath('go');
  if (!go) throw new Error('cannot build FerretDB: `go` is not on PATH. Install Go (https://go.dev/dl/).');

  const progress = startProgress(
    `building FerretDB ${FERRETDB_VERSION} (${variant}) into ${bin}`,
    opts.progress,
  );
  const deadline = Date.now() + (opts.timeoutMs ?? 600_000);
  fs.mkdirSync(path.dirname(bin), { recursive: true });
  // Build beside the target and rename: two processes building at once never see a partial binary.
  const tmp = `${bin}.${process.pid}.tmp`;
  try {
    if (variant === 'stock') {
      await run(go, ['build', '-o', tmp, '.'], WRAPPER_DIR, deadline);
    } else {
      const staging = await preparePatchedSource(go, deadline);
      try {
        const modfile = path.join(staging, 'go.mod');
        await run(go, ['build', `-modfile=${modfile}`, '-o', tmp, '.'], WRAPPER_DIR, deadline);
        keepSource(staging);
      } finally {
        fs.rmSync(staging, { recursive: true, force: true });
      }
    }
    fs.renameSync(tmp, bin);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw err;
  } finally {
    progress.stop();
  }
  log(`built FerretDB in ${progress.elapsedS()} s: ${bin}`);
  return bin;
}

/**
 * Copies the module out of the Go module cache (downloading it first if needed) into a directory of
 * this process, applies the patches, and writes there the go.mod that builds the wrapper against the
 * copy. Returns that directory.
 */
async function preparePatchedSource(go: string, deadline: number): Promise<string> {
  const json = await run(
    go,
    ['mod', 'download', '-json', `${MODULE}@v${FERRETDB_VERSION}`],
    WRAPPER_DIR,
    deadline,
  );
  const cached = (JSON.parse(json) as { Dir?: string }).Dir;
  if (!cached) throw new Error(`go mod download did not name a directory for ${MODULE}:\n${json}`);

  const staging = path.join(SOURCE_DIR, `${FERRETDB_VERSION}-p${FERRETDB_PATCH_LEVEL}.${process.pid}.tmp`);
  fs.rmSync(staging, { recursive: true, force: true });
  const src = path.join(staging, 'FerretDB');
  fs.mkdirSync(staging, { recursive: true });
  fs.cpSync(cached, src, { recursive: true });
  makeWritable(src);
  for (const patch of patchFiles()) {
    // In a clone the copy lies inside the repository's worktree: the ceiling keeps git from treating it
    // as part of that repository, so the paths of the patch are taken relative to the copy.
    await run('git', ['apply', '--whitespace=nowarn', patch], src, deadline, {
      GIT_CEILING_DIRECTORIES: staging,
    });
  }
  const replace = `\nreplace ${MODULE} v${FERRETDB_VERSION} => ${src}\n`;
  fs.writeFileSync(
    path.join(staging, 'go.mod'),
    fs.readFileSync(path.join(WRAPPER_DIR, 'go.mod'), 'utf8') + replace,
  );
  fs.copyFileSync(path.join(WRAPPER_DIR, 'go.sum'), path.join(staging, 'go.sum'));
  return staging;
}

/**
 * Keeps the patched module of the last build in `<cache>/ferretdb-src/<version>-p<level>/FerretDB`,
 * to read it or run its tests there (`go test ./internal/backends/sqlite/... ./internal/handler/...`).
 */
function keepSource(staging: string): void {
  const dir = path.join(SOURCE_DIR, `${FERRETDB_VERSION}-p${FERRETDB_PATCH_LEVEL}`);
  fs.rmSync(dir, { recursive: true, force: true });
  fs.cpSync(path.join(staging, 'FerretDB'), path.join(dir, 'FerretDB'), { recursive: true });
  // FerretDB's tests read their version from this file, which its own repository generates.
  fs.writeFileSync(path.join(dir, 'FerretDB', 'build', 'version', 'version.txt'), `v${FERRETDB_VERSION}\n`);
}

/** The patch files, in the order they apply. */
export function patchFiles(): string[] {
  return fs
    .readdirSync(PATCH_DIR)
    .filter((f) => f.endsWith('.patch'))
    .sort()
    .map((f) => path.join(PATCH_DIR, f));
}

export interface Progress {
  stop(): void;
  elapsedS(): number;
}

/**
 * Shows that the build is running, on stderr whatever the caller logs (the demo logs only warnings):
 * on a TTY one line rewritten every second with the elapsed time, else a line now and one every
 * `intervalMs`. Each says how long a build usually takes.
 */
export function startProgress(what: string, opts: ProgressOptions = {}): Progress {
  const started = Date.now();
  const elapsedS = (): number => Math.round((Date.now() - started) / 1000);
  const tty = opts.isTTY ?? process.stderr.isTTY === true;
  const write = opts.write ?? ((text: string) => void process.stderr.write(text));
  const line = (): string => `${what}: ${elapsedS()} s (${USUAL_BUILD_TIME})`;
  const timer = tty
    ? setInterval(() => write(`\r\x1b[K${line()}`), opts.intervalMs ?? 1000)
    : setInterval(() => write(`${line()}\n`), opts.intervalMs ?? 10_000);
  timer.unref();
  write(tty ? line() : `${line()}\n`);
  let stopped = false;
  return {
    elapsedS,
    stop() {
      if (stopped) return;
      stopped = true;
      clearInterval(timer);
      if (tty) write('\r\x1b[K');
    },
  };
}

/** Runs a command to completion and returns its stdout; rejects with its output when it fails. */
function run(
  cmd: string,
  args: string[],
  cwd: string,
  deadline: number,
  env: NodeJS.ProcessEnv = {},
): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      cwd,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-8192)));
    const timeoutMs = Math.max(0, deadline - Date.now());
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`${cmd} ${args.join(' ')}: ${err.message}`));
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) return resolve(stdout);
      const why = signal === 'SIGKILL' ? 'timed out' : `exited with ${code ?? signal}`;
      reject(new Error(`${cmd} ${args.join(' ')} (in ${cwd}) ${why}:\n${(stderr || stdout).trimEnd()}`));
    });
  });
}

function makeWritable(dir: string): void {
  fs.chmodSync(dir, 0o755);
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const file = path.join(dir, entry.name);
    if (entry.isDirectory()) makeWritable(file);
    else fs.chmodSync(file, 0o644);
  }
}

export function findOnPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (!dir) continue;
    const file = path.join(dir, name);
    if (isExecutable(file)) return file;
  }
  return undefined;
}

export function isExecutable(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

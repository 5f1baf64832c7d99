/**
 * Test helpers for real clusters on loopback: a master on port 0 on a database of db.ts, runners and
 * feeders in-process, and master/runner processes started through the CLI for the kill tests.
 * Waits are wait.ts's: on events, bounded, naming what did not happen.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createLogger } from '../../common/logger';
import { Master } from '../../master/master';
import type { MasterOptions } from '../../master/options';
import { freePort } from '../../db/server';
import { testDbUrl, testMongoUrl } from './db';
import { waitForEvent, within, WAIT_MS } from './wait';

export const ROOT = path.resolve(__dirname, '..', '..');
export const FIXTURES = path.join(ROOT, 'test', 'fixtures', 'tasks');
const CLI = path.join(ROOT, 'bin', 'taskmaster.js');

export const testLogger = () =>
  createLogger({ level: process.env.TEST_LOG_LEVEL ?? 'error', format: 'json', stderr: true });

/** A master on `dbName` of the run's database server, port 0 and a quiet logger; not started. */
export function createMaster(dbName: string, opts: Partial<MasterOptions> = {}): Master {
  return new Master({ mongoUrl: testMongoUrl(), dbName, port: 0, logger: testLogger(), ...opts });
}

/** A started {@link createMaster}; one whose start fails is closed before the error is thrown. */
export async function startMaster(dbName: string, opts: Partial<MasterOptions> = {}): Promise<Master> {
  const m = createMaster(dbName, opts);
  await closedOnFailure(m, m.start());
  return m;
}

/**
 * Resolves as `started` does; if it rejects, closes `thing` first (its half-open sockets, timers and
 * children would otherwise outlive the test), then rejects with the start's error.
 */
export async function closedOnFailure(
  thing: { close(): Promise<void> },
  started: Promise<void>,
): Promise<void> {
  try {
    await started;
  } catch (err) {
    await thing.close().catch(() => undefined);
    throw err;
  }
}

export { freePort };

export function tempDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `taskmaster-${prefix}-`));
}

export interface Proc {
  child: ChildProcess;
  output: () => string;
  /** Resolves when a line matching `pattern` appears on stdout or stderr (already seen lines count). */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<string>;
  /** Resolves with the exit code once the process exits by itself (bounded, naming the command). */
  exit(timeoutMs?: number): Promise<number | null>;
  kill(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Starts `taskmaster ARGS` as a child process with JSON logs. */
export function spawnCli(args: string[], env: Record<string, string> = {}): Proc {
  return spawnProc(process.execPath, [CLI, ...args], { env });
}

/** Starts a process with JSON taskmaster logs, e.g. `npx taskmaster …` in another folder. */
export function spawnProc(
  command: string,
  args: string[],
  { env = {}, cwd }: { env?: Record<string, string>; cwd?: string } = {},
): Proc {
  const child = spawn(command, args, {
    cwd,
    env: { ...process.env, TASKMASTER_LOG_FORMAT: 'json', TASKMASTER_LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const listeners = new Set<() => void>();
  const onData = (d: Buffer) => {
    out += d.toString();
    for (const l of listeners) l();
  };
  child.stdout?.on('data', onData);
  child.stderr?.on('data', onData);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return {
    child,
    output: () => out,
    waitFor(pattern, timeoutMs = 60_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const m = pattern.exec(out);
          if (m) {
            listeners.delete(check);
            clearTimeout(timer);
            resolve(m[0]);
          }
        };
        const timer = setTimeout(() => {
          listeners.delete(check);
          reject(new Error(`timed out waiting for ${pattern} in:\n${out.slice(-3000)}`));
        }, timeoutMs);
        listeners.add(check);
        void exited.then((code) => {
          if (!listeners.has(check)) return;
          listeners.delete(check);
          clearTimeout(timer);
          reject(new Error(`process exited (${code}) before ${pattern}:\n${out.slice(-3000)}`));
        });
        check();
      });
    },
    exit(timeoutMs = WAIT_MS) {
      const what = () =>
        `${path.basename(args[0] ?? command)} ${args.slice(1).join(' ')} to exit; its output:\n${out.slice(-3000)}`;
      return within(timeoutMs, exited, what);
    },
    async kill(signal = 'SIGTERM') {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      child.kill(signal);
      return exited;
    },
  };
}

/**
 * Starts `taskmaster runner` as a process on the fixtures (1 worker, 2 slots) and resolves once the
 * master has its hello.
 */
export async function spawnRunner(master: Master, id: string, extra: string[] = []): Promise<Proc> {
  const up = waitForEvent(master, 'runner:up', (rid) => rid === id);
  const p = spawnCli([
    'runner',
    '--master',
    master.url,
    '--tasks',
    FIXTURES,
    '--workers',
    '1',
    '--slots',
    '2',
    '--runner-id',
    id,
    ...extra,
  ]);
  await up;
  return p;
}

/** A master started as its own process (`taskmaster master`) on a database of db.ts. */
export interface MasterProcess extends Proc {
  url: string;
  port: number;
  /** Its resident memory now and at its peak (`VmRSS`, `VmHWM` of /proc/<pid>/status), in MB. */
  memory(): { rssMb: number; peakMb: number };
}

/**
 * Starts `taskmaster master` on `dbName` (port free on loopback) and resolves once it listens: for
 * tests that measure the master's own memory, or kill, stop or restart it.
 */
export async function spawnMaster(
  dbName: string,
  extra: string[] = [],
  opts: { mongoUrl?: string; startTimeoutMs?: number } = {},
): Promise<MasterProcess> {
  const port = await freePort();
  const url = opts.mongoUrl ?? testDbUrl(dbName);
  const p = spawnCli(['master', '--port', String(port), '--mongo-url', url, ...extra]);
  await p.waitFor(/master listening/, opts.startTimeoutMs);
  return {
    ...p,
    port,
    url: `http://127.0.0.1:${port}`,
    memory() {
      const status = fs.readFileSync(`/proc/${p.child.pid}/status`, 'utf8');
      const kb = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+) kB`).exec(status)?.[1] ?? 0);
      return { rssMb: Math.round(kb('VmRSS') / 1024), peakMb: Math.round(kb('VmHWM') / 1024) };
    },
  };
}

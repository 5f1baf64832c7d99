/**
 * Child processes of the peer benchmark, tethered so that none outlives it: each runs under a small
 * Node process that holds a pipe from the benchmark and SIGKILLs its child when the pipe closes, so a
 * benchmark killed with SIGKILL (no `exit` handler runs) still leaves nothing behind.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';

// Runs as `node -e TETHER BIN ARGS...`: reports the child's pid on fd 3, passes its output through,
// kills it when stdin closes and exits with its status. Plain JavaScript: it runs without a loader.
const TETHER = `
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const [bin, ...args] = process.argv.slice(1);
const child = spawn(bin, args, { stdio: ['ignore', 'inherit', 'inherit'] });
child.on('error', (err) => { process.stderr.write(err.message + '\\n'); process.exit(127); });
if (child.pid) fs.writeSync(3, child.pid + '\\n');
const kill = () => child.exitCode === null && child.signalCode === null && child.kill('SIGKILL');
process.stdin.on('end', kill).on('error', kill).resume();
process.on('SIGTERM', () => child.kill('SIGTERM'));
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
`;

export interface Tethered {
  /** The process itself (not its tether): for RSS and signals. */
  pid: number;
  /** Everything it printed so far, stdout and stderr (the last 64 KB). */
  output(): string;
  /** Resolves with the first match of `pattern` in the output; rejects on exit or after `timeoutMs`. */
  waitFor(pattern: RegExp, what: string, timeoutMs?: number): Promise<string>;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves when it is gone. Safe to call twice. */
  stop(graceMs?: number): Promise<void>;
  readonly exited: Promise<void>;
}

const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of live) c.kill('SIGKILL');
});

/** Starts `bin args` tethered to this process; resolves once its pid is known. */
export async function spawnTethered(
  bin: string,
  args: string[],
  env: NodeJS.ProcessEnv = process.env,
): Promise<Tethered> {
  const tether = spawn(process.execPath, ['-e', TETHER, bin, ...args], {
    env,
    stdio: ['pipe', 'pipe', 'pipe', 'pipe'],
  });
  live.add(tether);
  let text = '';
  const listeners = new Set<() => void>();
  const keep = (chunk: Buffer) => {
    text += chunk.toString();
    if (text.length > 128 * 1024) text = text.slice(-64 * 1024);
    for (const l of listeners) l();
  };
  tether.stdout?.on('data', keep);
  tether.stderr?.on('data', keep);
  let gone = false;
  const exited = new Promise<void>((resolve) =>
    tether.once('exit', () => {
      gone = true;
      live.delete(tether);
      for (const l of listeners) l();
      resolve();
    }),
  );
  const pid = await new Promise<number>((resolve, reject) => {
    let buf = '';
    const pidPipe = tether.stdio[3] as NodeJS.ReadableStream;
    pidPipe.on('data', (d: Buffer) => {
      buf += d.toString();
      if (buf.endsWith('\n')) resolve(Number(buf.trim()));
    });
    void exited.then(() => reject(new Error(`${bin} did not start:\n${text}`)));
  });

  const waitFor = (pattern: RegExp, what: string, timeoutMs = 60_000): Promise<string> =>
    new Promise((resolve, reject) => {
      const check = () => {
        const m = pattern.exec(text);
        if (m) done(() => resolve(m[0]));
        else if (gone) done(() => reject(new Error(`${what} exited before "${pattern.source}":\n${text}`)));
      };
      const timer = setTimeout(
        () =>
          done(() => reject(new Error(`${what}: no "${pattern.source}" within ${timeoutMs} ms:\n${text}`))),
        timeoutMs,
      );
      const done = (settle: () => void) => {
        clearTimeout(timer);
        listeners.delete(check);
        settle();
      };
      listeners.add(check);
      check();
    });

  let stopping: Promise<void> | undefined;
  const stop = (graceMs = 5_000): Promise<void> =>
    (stopping ??= (async () => {
      if (gone) return;
      tether.kill('SIGTERM');
      const timer = setTimeout(() => tether.stdin?.end(), graceMs);
      await exited;
      clearTimeout(timer);
    })());

  return { pid, output: () => text, waitFor, stop, exited };
}

/** Resident set size of a process in MB: current (`VmRSS`) and peak (`VmHWM`). */
export function rssMb(pid: number): { rss: number; peak: number } {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string) => Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(status)?.[1] ?? NaN);
  return { rss: Math.round(kb('VmRSS') / 1024), peak: Math.round(kb('VmHWM') / 1024) };
}

/**
 * CPU time (user + system, ms) that `root` and its living descendants have used: threads are counted
 * in their process, and the children a runner has already reaped in its `cutime`/`cstime`.
 */
export function treeCpuMs(root: number): number {
  const ticks = 100; // USER_HZ on Linux
  const stats = new Map<number, { ppid: number; cpu: number }>();
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let stat: string;
    try {
      stat = fs.readFileSync(`/proc/${name}/stat`, 'utf8');
    } catch {
      continue;
    }
    // After `pid (comm) `: state ppid ... utime(14) stime(15) cutime(16) cstime(17), 1-based overall.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    stats.set(Number(name), {
      ppid: Number(f[1]),
      cpu: Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]),
    });
  }
  let total = 0;
  for (const [pid, s] of stats) {
    for (let p = pid; p > 1; p = stats.get(p)?.ppid ?? 0) {
      if (p !== root) continue;
      total += s.cpu;
      break;
    }
  }
  return (total * 1000) / ticks;
}

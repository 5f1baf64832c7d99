/**
 * The built-in `exec` task: runs an existing program and completes with what it did.
 *
 *   { module: 'exec', params: ['node', ['-e', 'process.exit(3)'], { cwd, env, shell, maxOutput }] }
 *   → { code: 3, signal: null, stdout: '', stderr: '', truncated: false }
 *
 * A non-zero exit code is a result, not an error: the caller decides what it means. The name `exec`
 * is reserved: a module file called `exec` in a task folder is never loaded; the built-in wins, so a
 * task folder cannot quietly replace it (or escape the allow-list). Only a runner that allows some
 * program announces `exec` among its modules, so the master sends exec tasks to such runners alone.
 *
 * It runs in the runner process, not in a pool child. The program is a process of its own already, so
 * a child would only add a hop and copy the output once more over IPC; and when a child is killed
 * after a timeout, a program it started would be left running with nobody to kill it. Here the pool
 * holds the program's process directly, as the host of its attempt (runner/attempt-supervisor.ts):
 * cancel and run timeout send SIGTERM, then SIGKILL after the grace, and closing the pool kills what
 * is left.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { formatIssues, issueText } from '../protocol/issues';
import { wireError, type WireError } from '../protocol/errors';
import { signalTree, TREE_TAG_VAR } from './process-tree';

export const EXEC_MODULE = 'exec';
/** What a runner that allows programs announces as the `exec` module's version: it is built in. */
export const EXEC_HASH = 'built-in';
/** Refused by the runner's allow-list; unrecoverable, since another attempt would be refused the same way. */
export const EEXEC = 'EEXEC';
export const DEFAULT_MAX_OUTPUT = 1024 * 1024;
/** Largest `maxOutput` per stream: both streams together stay under the runner's default result limit. */
export const MAX_OUTPUT = 1024 * 1024;
/**
 * Variables a task may not set: they choose which program or library actually runs (`PATH` found
 * another `echo`, `LD_PRELOAD` loads any library), which would bypass the allow-list.
 */
export const REFUSED_ENV = /^(PATH|LD_\w*|DYLD_\w*|NODE_OPTIONS|NODE_PATH|BASH_ENV|ENV|IFS|SHELLOPTS|PS4)$/i;

export interface ExecSpec {
  program: string;
  args: string[];
  cwd?: string;
  env?: Record<string, string>;
  shell: boolean;
  /** Bytes kept per stream (stdout, stderr). */
  maxOutput: number;
}

export interface ExecResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** Either stream was longer than `maxOutput` and was cut. */
  truncated: boolean;
}

export type ExecOutcome = { ok: true; result: ExecResult } | { ok: false; error: WireError };

const paramsSchema = z.object({
  program: z.string().min(1, 'the program must be named'),
  args: z.array(z.string()),
  options: z.strictObject({
    cwd: z.string().min(1).optional(),
    env: z
      .record(z.string(), z.string())
      .refine((env) => !Object.keys(env).some((k) => REFUSED_ENV.test(k)), {
        message: 'may not set PATH, LD_*, DYLD_*, NODE_OPTIONS or other loader variables',
      })
      .optional(),
    shell: z.boolean().optional(),
    maxOutput: z.number().int().min(0).max(MAX_OUTPUT, `must be at most ${MAX_OUTPUT} bytes`).optional(),
  }),
});

/**
 * Checks an exec task's params against the runner's allow-list.
 *
 * The rule: `program` must appear in `allowExec` exactly as the task gives it. `node` allows `node`
 * (found on the runner's PATH) but not `/usr/bin/node`, and `/bin/echo` allows only that path; names
 * are not resolved, so an allow-list entry means what an operator reads in it. With `shell: true` the
 * command line goes to /bin/sh, where the args can run anything, so `sh` must be allowed as well.
 */
export function checkExec(
  params: unknown[],
  allowExec: readonly string[],
  resolved: ReadonlyMap<string, string> = resolveAllowed(allowExec),
): { ok: true; spec: ExecSpec } | { ok: false; error: WireError } {
  const [program, args = [], options = {}] = params;
  const parsed = paramsSchema.safeParse({ program, args, options });
  if (!parsed.success) {
    const at = { program: 0, args: 1, options: 2 };
    const issues = formatIssues(parsed.error.issues).map((i) => ({
      ...i,
      path: i.path.replace(
        /^(program|args|options)\.?/,
        (m, name: keyof typeof at) => `params[${at[name]}]${m.endsWith('.') ? '.' : ''}`,
      ),
    }));
    return { ok: false, error: wireError('EVALIDATION', `exec: ${issueText(issues)}`) };
  }
  const p = parsed.data;
  if (!allowExec.includes(p.program))
    return refuse(`exec of "${p.program}" is not allowed on this runner (allow it with --allow-exec)`);
  if (p.options.shell && !allowExec.includes('sh'))
    return refuse(`exec of "${p.program}" with shell: true needs "sh" in --allow-exec as well`);
  // The path found when the runner started: nothing the task sends changes which file runs.
  const file = p.options.shell ? p.program : resolved.get(p.program);
  if (!file) return refuse(`exec of "${p.program}": no such program was found when the runner started`);
  return {
    ok: true,
    spec: {
      program: file,
      args: p.args,
      ...(p.options.cwd ? { cwd: p.options.cwd } : {}),
      ...(p.options.env ? { env: p.options.env } : {}),
      shell: p.options.shell ?? false,
      maxOutput: p.options.maxOutput ?? DEFAULT_MAX_OUTPUT,
    },
  };
}

/**
 * Each allowed program's absolute path, looked up once on the runner's own PATH at start-up; a name
 * that is not found is left out (its tasks are refused).
 */
export function resolveAllowed(
  allowExec: readonly string[],
  searchPath = process.env.PATH ?? '',
): Map<string, string> {
  const out = new Map<string, string>();
  for (const name of allowExec) {
    const candidates = name.includes('/')
      ? [path.resolve(name)]
      : searchPath
          .split(path.delimiter)
          .filter((d) => path.isAbsolute(d))
          .map((d) => path.join(d, name));
    const found = candidates.find(isExecutable);
    if (found) out.set(name, found);
  }
  return out;
}

function isExecutable(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

function refuse(message: string): { ok: false; error: WireError } {
  return { ok: false, error: { code: EEXEC, message } };
}

/**
 * One running program, the host of one attempt. `done` is called once, when it has exited (or could
 * not be started).
 */
export class ExecProcess {
  readonly killWarning = 'program did not stop after SIGTERM; killing it';
  private readonly proc: ChildProcess;
  private readonly treeTag = `${process.pid}.exec.${randomBytes(6).toString('hex')}`;
  private exited = false;
  private killTimer: NodeJS.Timeout | null = null;
  private readonly exitedPromise: Promise<void>;

  constructor(spec: ExecSpec, done: (outcome: ExecOutcome) => void) {
    this.proc = spawn(spec.program, spec.args, {
      ...(spec.cwd ? { cwd: spec.cwd } : {}),
      // The task's variables are added to the runner's, so PATH and HOME still work; the tag marks
      // what the program starts, to be killed with it (process-tree.ts).
      env: { ...process.env, ...spec.env, [TREE_TAG_VAR]: this.treeTag },
      shell: spec.shell,
      stdio: ['ignore', 'pipe', 'pipe'],
      // Out of the terminal's process group, like the pool's children: Ctrl-C is the runner's to handle.
      // The group is the core of the program's process tree, which is killed with it.
      detached: true,
    });
    // What the program started dies when it exits; that also ends pipes a background process held
    // open, so 'close' follows.
    this.proc.once('exit', () => this.killTree());
    const stdout = new Capture(spec.maxOutput);
    const stderr = new Capture(spec.maxOutput);
    this.proc.stdout?.on('data', (b: Buffer) => stdout.add(b));
    this.proc.stderr?.on('data', (b: Buffer) => stderr.add(b));
    let failed: Error | undefined;
    this.proc.once('error', (err) => (failed = err));
    // 'close' rather than 'exit': it comes after both streams have ended, so no output is missed.
    // It also follows a failed spawn, so `done` is called exactly once either way.
    this.exitedPromise = new Promise((resolve) =>
      this.proc.once('close', (code, signal) => {
        this.exited = true;
        if (this.killTimer) clearTimeout(this.killTimer);
        resolve();
        if (failed && this.proc.pid === undefined)
          return done({
            ok: false,
            error: wireError('ETASK', `exec of "${spec.program}" could not start: ${failed.message}`),
          });
        done({
          ok: true,
          result: {
            code,
            signal,
            stdout: stdout.text(),
            stderr: stderr.text(),
            truncated: stdout.truncated || stderr.truncated,
          },
        });
      }),
    );
  }

  get pid(): number | undefined {
    return this.proc.pid;
  }

  /** SIGTERM to the program's process group: its chance to stop on its own. */
  cancel(_key: string, _error: WireError): void {
    if (!this.exited) this.terminate();
  }

  holds(_key: string): boolean {
    return !this.exited;
  }

  killFor(_reason: string): void {
    if (!this.exited) this.killTree();
  }

  /** SIGTERM now, SIGKILL if the program is still there after `graceMs`; resolves once it has exited. */
  stop(graceMs: number): Promise<void> {
    if (!this.exited && !this.killTimer) {
      this.terminate();
      this.killTimer = setTimeout(() => this.killTree(), graceMs);
    }
    return this.exitedPromise;
  }

  private terminate(): void {
    try {
      process.kill(-(this.proc.pid as number), 'SIGTERM');
    } catch {
      this.proc.kill('SIGTERM');
    }
  }

  private killTree(): void {
    if (this.proc.pid !== undefined) signalTree(this.proc.pid, this.treeTag, 'SIGKILL');
  }
}

/** Keeps the first `max` bytes of a stream and notes whether anything was cut (a cut may split a UTF-8 character). */
class Capture {
  private chunks: Buffer[] = [];
  private size = 0;
  truncated = false;

  constructor(private readonly max: number) {}

  add(chunk: Buffer): void {
    const room = this.max - this.size;
    if (chunk.length > room) this.truncated = true;
    if (room <= 0) return;
    const kept = chunk.length > room ? chunk.subarray(0, room) : chunk;
    this.chunks.push(kept);
    this.size += kept.length;
  }

  text(): string {
    return Buffer.concat(this.chunks).toString('utf8');
  }
}

/**
 * The parent's handle on one child process: forks it, feeds it module code and attempts, and reports
 * what it says and how it died. It owns the counts the pool chooses by (attempts held, abandoned,
 * finished) and the reasons it was retired or killed; the choices themselves (which child, when to
 * retire, when to replace) belong to the pool, and an attempt's timeout and escalation to its
 * supervisor. A handle whose process exited is never reused.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import path from 'node:path';
import type { Duplex } from 'node:stream';
import { limitLog } from '../common/log-limit';
import type { Logger } from '../common/logger';
import type { ReportedError, WireError } from '../protocol/errors';
import { ENVELOPE_BYTES } from '../protocol/limits';
import type { AddReply } from '../protocol/schemas';
import type { AttemptHost } from './attempt-supervisor';
import { ChildOutput, MAX_OUTPUT_LINE_BYTES } from './child-output';
import { signalTree, TREE_TAG_VAR } from './process-tree';
import { WORKER_CHANNEL_FD, WORKER_CHANNEL_VAR, WorkerChannel, workerMessageLimit } from './worker-channel';
import type { LoadedModule } from './loader';
import {
  ChildCommand,
  ParentCommand,
  toParentSchema,
  type TaskPayload,
  type ToChild,
  type ToParent,
} from './sandbox-messages';

export interface ChildSpawnOptions {
  /** Extra Node flags for the child, e.g. `--max-old-space-size=512`. */
  execArgv: string[];
  orphanWatchdog: boolean;
  /** Longest message the child may send (read as each message begins); a longer one kills it. Default: {@link workerMessageLimit} of 1 MiB results. */
  maxMessageBytes?: () => number;
  logger: Logger;
}

export interface ChildExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Attempts the child still held when it died. */
  keys: string[];
  /** The uncaught error the child reported just before dying, if any. */
  fatal?: ReportedError;
  /** Died before it ever reported ready (a broken install rather than a broken task). */
  early: boolean;
}

// The child's code may be .ts (run through tsx) or compiled .js next to this file.
const CHILD_MAIN = path.join(__dirname, `child-main${path.extname(__filename) || '.js'}`);
const TSX_CJS = require.resolve('tsx/cjs');

let nextId = 1;

export class ChildHandle
  extends EventEmitter<{ message: [ToParent]; exit: [ChildExit]; ready: [] }>
  implements AttemptHost
{
  readonly id = nextId++;
  readonly killWarning = 'task did not stop after its abort signal; killing its worker process';
  /** Attempts the child is running, including cancelled ones that have not settled yet. */
  readonly keys = new Set<string>();
  /** Of those, the ones cancelled or timed out that the child has not let go of yet. */
  private readonly cancelled = new Set<string>();
  private finishedCount = 0;
  private retiredFor: string | undefined;
  private killReason: string | undefined;
  private readonly proc: ChildProcess;
  /** Module name → the one version the child holds (it keeps only the newest per name). */
  private readonly versions = new Map<string, string>();
  private fatal: ReportedError | undefined;
  private isReady = false;
  private exited = false;
  private readonly exitedPromise: Promise<void>;
  private readonly log: Logger;
  private readonly output: ChildOutput;
  private readonly channel: WorkerChannel;
  private readonly maxMessageBytes: () => number;
  /** Inherited by every process the child starts, so they can be found and killed with it. */
  private readonly treeTag = `${process.pid}.${this.id}.${randomBytes(6).toString('hex')}`;

  constructor(opts: ChildSpawnOptions) {
    super();
    const args = opts.orphanWatchdog ? [] : ['--no-orphan-watchdog'];
    // Not fork(): Node's IPC channel reads a message whole whatever its size; this one is bounded.
    this.proc = spawn(process.execPath, ['--require', TSX_CJS, ...opts.execArgv, CHILD_MAIN, ...args], {
      stdio: ['ignore', 'pipe', 'pipe', 'pipe'],
      env: {
        ...process.env,
        [TREE_TAG_VAR]: this.treeTag,
        [WORKER_CHANNEL_VAR]: String(WORKER_CHANNEL_FD),
      },
      // A process group of its own: Ctrl-C in the runner's terminal signals the terminal's foreground
      // group, and must not reach the children. It is also the core of the child's process tree,
      // which is killed with it (process-tree.ts). The runner stops them itself on shutdown (and the
      // orphan watchdog, or the closed IPC channel, if the runner dies).
      detached: true,
    });
    this.log = opts.logger.child({ child: this.id, pid: this.proc.pid });
    liveChildren.add(this);
    ensureReaper();

    // Task code may print; its lines end up in the runner's log rather than being lost, within the
    // limits of child-output.ts (a line, and bytes per attempt), so no flood is kept in memory.
    this.output = new ChildOutput(this.log);
    if (this.proc.stdout) this.output.attach(this.proc.stdout, 'stdout');
    if (this.proc.stderr) this.output.attach(this.proc.stderr, 'stderr');

    this.maxMessageBytes = opts.maxMessageBytes ?? (() => workerMessageLimit(Infinity));
    this.channel = new WorkerChannel(this.proc.stdio[WORKER_CHANNEL_FD] as Duplex, this.maxMessageBytes);
    this.channel.on('message', (raw) => this.onMessage(raw));
    this.channel.on('oversize', (limit) => {
      this.log.warn('worker process sent a message over the limit; killing it', { limitBytes: limit });
      this.killFor(`it sent a message over ${limit} bytes to the runner`);
    });
    // Sending to a process that just died raises 'error'; its 'exit' tells the real story.
    this.proc.on('error', (err) => this.log.debug('child process error', { error: err.message }));
    this.exitedPromise = new Promise((resolve) =>
      this.proc.once('exit', (code, signal) => {
        this.exited = true;
        liveChildren.delete(this);
        // Whatever the task started dies with the child, however the child ended.
        const left = this.reapTree();
        if (left > 0) this.log.warn('killed processes the worker process left behind', { processes: left });
        const keys = [...this.keys];
        this.keys.clear();
        this.emit('exit', { code, signal, keys, fatal: this.fatal, early: !this.isReady });
        resolve();
      }),
    );
  }

  get pid(): number | undefined {
    return this.proc.pid;
  }

  get alive(): boolean {
    return !this.exited;
  }

  get ready(): boolean {
    return this.isReady;
  }

  /** Attempts running here: what the pool balances on. */
  get load(): number {
    return this.keys.size;
  }

  /** Cancelled or timed-out attempts the child has not let go of: it may be stuck in one until the kill. */
  get abandoned(): number {
    return this.cancelled.size;
  }

  /** Attempts the child has reported settled (completed or failed), for recycling after N tasks. */
  get finished(): number {
    return this.finishedCount;
  }

  /** Why the pool is retiring this child: it takes no new attempt and is stopped once it holds none. */
  get retiring(): string | undefined {
    return this.retiredFor;
  }

  /** Why the child was killed on purpose, for the ECRASH message of the attempts it took along. */
  get killedFor(): string | undefined {
    return this.killReason;
  }

  retire(reason: string): void {
    this.retiredFor ??= reason;
  }

  holds(key: string): boolean {
    return this.keys.has(key);
  }

  /** Starts an attempt; sends the module's code first unless the child already holds this version. */
  start(key: string, task: TaskPayload, mod: LoadedModule): void {
    if (this.versions.get(mod.name) !== mod.hash) {
      this.send({ cmd: ChildCommand.Load, module: mod.name, hash: mod.hash, path: mod.path, code: mod.code });
      this.versions.set(mod.name, mod.hash);
    }
    this.keys.add(key);
    this.output.renew();
    const room = this.maxMessageBytes() - ENVELOPE_BYTES;
    this.send({ cmd: ChildCommand.Start, key, hash: mod.hash, task, room });
  }

  /** Fires the attempt's AbortSignal in the child; it counts as abandoned until the child lets go. */
  cancel(key: string, error: WireError): void {
    if (!this.keys.has(key)) return;
    this.cancelled.add(key);
    this.send({ cmd: ChildCommand.Cancel, key, error });
  }

  replyAdd(reqId: number, reply: AddReply): void {
    this.send({ cmd: ChildCommand.AddReply, reqId, reply });
  }

  /** SIGKILL on purpose; the first reason is kept for the ECRASH of every attempt it held. */
  killFor(reason: string): void {
    this.killReason ??= reason;
    this.kill('SIGKILL');
  }

  /** SIGTERM goes to the child's process group; SIGKILL to its whole tree (process-tree.ts). */
  private kill(signal: NodeJS.Signals): void {
    if (this.exited || this.proc.pid === undefined) return;
    if (signal === 'SIGKILL') this.reapTree();
    else
      try {
        process.kill(-this.proc.pid, signal);
      } catch {
        this.proc.kill(signal);
      }
  }

  /** SIGKILL to the child's tree; the number of processes killed besides the child. */
  reapTree(): number {
    if (this.proc.pid === undefined) return 0;
    const killed = signalTree(this.proc.pid, this.treeTag, 'SIGKILL');
    return killed.filter((pid) => pid !== this.proc.pid).length;
  }

  /** Ends the process: SIGTERM, then SIGKILL if it is still there after `graceMs`. */
  async stop(graceMs: number): Promise<void> {
    if (this.exited) return;
    this.kill('SIGTERM');
    const timer = setTimeout(() => this.kill('SIGKILL'), graceMs);
    await this.exitedPromise;
    clearTimeout(timer);
  }

  private send(msg: ToChild): void {
    if (this.exited || !this.channel.open) return;
    this.channel.send(msg);
  }

  /**
   * What the child says, parsed and bound to this process: the child runs task code, which can send
   * anything over the channel. A report about an attempt this child does not hold (another child's,
   * or one it already settled) is dropped, so a task cannot start, advance or settle another's
   * attempt; a task can still do so for the attempts that share its process (see docs).
   */
  private onMessage(raw: unknown): void {
    const parsed = toParentSchema.safeParse(raw);
    if (!parsed.success) {
      limitLog(this.log, 'warn', `ipc:${this.id}`, 'malformed message from a worker process dropped', {
        error: parsed.error.issues[0]?.message,
      });
      return;
    }
    let msg = parsed.data;
    switch (msg.cmd) {
      case ParentCommand.Ready:
        this.isReady = true;
        this.emit('ready');
        return;
      case ParentCommand.Fatal:
        this.fatal = msg.error;
        return;
      case ParentCommand.Log:
        if (msg.key !== undefined && !this.keys.has(msg.key)) msg = { ...msg, key: undefined };
        msg = boundedLog(msg);
        break;
      case ParentCommand.Add:
        // Adds tasks for whoever sent it; the key only names the sender in the log.
        break;
      case ParentCommand.Started:
      case ParentCommand.Progress:
        if (!this.keys.has(msg.key)) return this.notHeld(msg.cmd, msg.key);
        break;
      case ParentCommand.Completed:
      case ParentCommand.Failed:
        if (!this.keys.delete(msg.key)) return this.notHeld(msg.cmd, msg.key);
        this.finishedCount++;
        if (this.cancelled.size > 0) this.cancelled.delete(msg.key);
        break;
    }
    this.emit('message', msg);
  }

  private notHeld(cmd: string, key: string): void {
    limitLog(
      this.log,
      'warn',
      `ipc-key:${this.id}`,
      'worker reported on an attempt it does not hold; dropped',
      {
        cmd,
        key,
      },
    );
  }
}

/** A task's log line over IPC, cut as a line of its output is (child-output.ts). */
function boundedLog(msg: Extract<ToParent, { cmd: ParentCommand.Log }>): typeof msg {
  let { message, meta } = msg;
  if (message.length > MAX_OUTPUT_LINE_BYTES)
    message = `${message.slice(0, MAX_OUTPUT_LINE_BYTES)} … [cut at ${MAX_OUTPUT_LINE_BYTES} characters]`;
  if (meta !== undefined) {
    const bytes = Buffer.byteLength(JSON.stringify(meta));
    if (bytes > MAX_OUTPUT_LINE_BYTES)
      meta = { metaLeftOut: `${bytes} bytes as JSON, over ${MAX_OUTPUT_LINE_BYTES}` };
  }
  return message === msg.message && meta === msg.meta ? msg : { ...msg, message, meta };
}

/**
 * Children must not outlive the runner. One 'exit' listener for every pool in the process kills
 * whatever is still alive, with the trees they started (plain syscalls and /proc reads, fine inside
 * 'exit'); a runner killed outright is covered by the child's own watchdog (child-main.ts).
 */
const liveChildren = new Set<ChildHandle>();
let reaperInstalled = false;
function ensureReaper(): void {
  if (reaperInstalled) return;
  reaperInstalled = true;
  process.on('exit', () => {
    for (const c of liveChildren) c.reapTree();
  });
}

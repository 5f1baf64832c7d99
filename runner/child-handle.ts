/**
 * The parent's handle on one child process: forks it, feeds it module code and attempts over its
 * channel (worker-channel.ts), and reports how it died. The bookkeeping every kind of worker shares
 * (attempts held, abandoned, finished; what it says, parsed and bound to it) is in worker-host.ts;
 * the choices (which worker, when to retire, when to replace) belong to the pool, and an attempt's
 * timeout and escalation to its supervisor. A handle whose process exited is never reused.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import type { Duplex } from 'node:stream';
import type { Logger } from '../common/logger';
import { ChildOutput } from './child-output';
import { signalTree, TREE_TAG_VAR } from './process-tree';
import type { ToChild } from './sandbox-messages';
import { WORKER_CHANNEL_FD, WORKER_CHANNEL_VAR, WorkerChannel, workerMessageLimit } from './worker-channel';
import { WorkerHost } from './worker-host';

export type { ChildExit } from './worker-host';

export interface ChildSpawnOptions {
  /** Extra Node flags for the child, e.g. `--max-old-space-size=512`. */
  execArgv: string[];
  orphanWatchdog: boolean;
  /** Longest message the child may send (read as each message begins); a longer one kills it. Default: {@link workerMessageLimit} of 1 MiB results. */
  maxMessageBytes?: () => number;
  logger: Logger;
}

// The child's code may be .ts (run through tsx) or compiled .js next to this file.
const CHILD_MAIN = path.join(__dirname, `child-main${path.extname(__filename) || '.js'}`);
const TSX_CJS = require.resolve('tsx/cjs');

let spawned = 0;

export class ChildHandle extends WorkerHost {
  readonly killWarning = 'task did not stop after its abort signal; killing its worker process';
  readonly kind = 'process';
  private readonly proc: ChildProcess;
  private readonly exitedPromise: Promise<void>;
  private readonly channel: WorkerChannel;
  /** Inherited by every process the child starts, so they can be found and killed with it. */
  private readonly treeTag: string;

  constructor(opts: ChildSpawnOptions) {
    const args = opts.orphanWatchdog ? [] : ['--no-orphan-watchdog'];
    const treeTag = `${process.pid}.${++spawned}.${randomBytes(6).toString('hex')}`;
    // Not fork(): Node's IPC channel reads a message whole whatever its size; this one is bounded.
    const proc = spawn(process.execPath, ['--require', TSX_CJS, ...opts.execArgv, CHILD_MAIN, ...args], {
      stdio: ['ignore', 'pipe', 'pipe', 'pipe'],
      env: {
        ...process.env,
        [TREE_TAG_VAR]: treeTag,
        [WORKER_CHANNEL_VAR]: String(WORKER_CHANNEL_FD),
      },
      // A process group of its own: Ctrl-C in the runner's terminal signals the terminal's foreground
      // group, and must not reach the children. It is also the core of the child's process tree,
      // which is killed with it (process-tree.ts). The runner stops them itself on shutdown (and the
      // orphan watchdog, or the closed IPC channel, if the runner dies).
      detached: true,
    });
    const log = opts.logger.child({ child: spawned, pid: proc.pid });
    // Task code may print; its lines end up in the runner's log rather than being lost, within the
    // limits of child-output.ts (a line, and bytes per attempt), so no flood is kept in memory.
    super(log, new ChildOutput(log), opts.maxMessageBytes ?? (() => workerMessageLimit(Infinity)));
    this.proc = proc;
    this.treeTag = treeTag;
    liveChildren.add(this);
    ensureReaper();

    if (this.proc.stdout) this.output.attach(this.proc.stdout, 'stdout');
    if (this.proc.stderr) this.output.attach(this.proc.stderr, 'stderr');

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
        liveChildren.delete(this);
        // Whatever the task started dies with the child, however the child ended.
        const left = this.reapTree();
        if (left > 0) this.log.warn('killed processes the worker process left behind', { processes: left });
        this.ended(code, signal);
        resolve();
      }),
    );
  }

  get pid(): number | undefined {
    return this.proc.pid;
  }

  protected forceEnd(): void {
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

  protected send(msg: ToChild): void {
    if (this.exited || !this.channel.open) return;
    this.channel.send(msg);
  }
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

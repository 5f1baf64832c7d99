/**
 * The runner's handle on one worker thread (`--isolation thread`): starts it, feeds it module code
 * and attempts as JSON texts over its port, batched per tick like a child's channel, and reports how
 * it ended. The bookkeeping is shared with child processes (worker-host.ts); the thread runs the same
 * processor (thread-main.ts).
 *
 * Ending a thread is `worker.terminate()`, which stops its JavaScript even in a synchronous loop: the
 * escalation after a cancel or run timeout, and a recycled or closing pool's stop, end in it. Anything
 * a task started with child_process carries the thread's tag in its environment (the thread has an
 * environment of its own) and is killed when the thread ends, as a child process's tree is.
 *
 * Messages from the thread are checked as a child's are: a text longer than the limit ends the
 * thread, and each message is parsed with the sandbox schema before anything is done with it.
 */
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import type { Logger } from '../common/logger';
import { capError, fromThrown } from '../protocol/errors';
import { ChildOutput } from './child-output';
import { MessageBatch, unpack } from './message-batch';
import { signalTagged, TREE_TAG_VAR } from './process-tree';
import type { ToChild } from './sandbox-messages';
import { workerMessageLimit } from './worker-channel';
import { WorkerHost } from './worker-host';

export interface ThreadSpawnOptions {
  /** Node flags for the thread (those a worker thread accepts). */
  execArgv: string[];
  /** Longest message the thread may send; a longer one ends it. Default: {@link workerMessageLimit} of 1 MiB results. */
  maxMessageBytes?: () => number;
  logger: Logger;
}

// The thread's code may be .ts (run through tsx) or compiled .js next to this file.
const THREAD_MAIN = path.join(__dirname, `thread-main${path.extname(__filename) || '.js'}`);
const TSX_CJS = require.resolve('tsx/cjs');
const BOOT = `require(${JSON.stringify(TSX_CJS)});\nrequire(${JSON.stringify(THREAD_MAIN)});\n`;

const JSONStringify = JSON.stringify;
const JSONParse = JSON.parse;

let started = 0;

export class ThreadHandle extends WorkerHost {
  readonly killWarning = 'task did not stop after its abort signal; terminating its worker thread';
  readonly kind = 'thread';
  private readonly worker: Worker;
  private readonly batch: MessageBatch;
  private readonly exitedPromise: Promise<void>;
  private readonly treeTag: string;

  constructor(opts: ThreadSpawnOptions) {
    const treeTag = `${process.pid}.thread.${++started}.${randomBytes(6).toString('hex')}`;
    const worker = new Worker(BOOT, {
      eval: true,
      execArgv: opts.execArgv,
      env: { ...process.env, [TREE_TAG_VAR]: treeTag },
      stdin: false,
      stdout: true,
      stderr: true,
    });
    const log = opts.logger.child({ thread: worker.threadId });
    super(log, new ChildOutput(log), opts.maxMessageBytes ?? (() => workerMessageLimit(Infinity)));
    this.worker = worker;
    this.treeTag = treeTag;
    this.batch = new MessageBatch((text) => {
      if (!this.exited) this.worker.postMessage(text);
    });
    this.output.attach(worker.stdout, 'stdout');
    this.output.attach(worker.stderr, 'stderr');
    worker.on('message', (text: unknown) => this.onText(text));
    // An error the thread could not report itself (it failed to load, or ran out of heap).
    worker.on('error', (err) => (this.fatal ??= capError(fromThrown(err, 'ECRASH'))));
    this.exitedPromise = new Promise((resolve) =>
      worker.once('exit', (code) => {
        this.batch.clear();
        const left = signalTagged(this.treeTag, 'SIGKILL').length;
        if (left > 0) this.log.warn('killed processes the worker thread left behind', { processes: left });
        this.ended(code, null);
        resolve();
      }),
    );
  }

  /** A thread has no pid of its own. */
  get pid(): number | undefined {
    return undefined;
  }

  get threadId(): number {
    return this.worker.threadId;
  }

  protected forceEnd(): void {
    if (!this.exited) void this.worker.terminate();
  }

  /**
   * Ends the thread at once: a thread has no signal to ask it first, and its attempts have had their
   * grace already (the supervisor's before a kill, the runner's on shutdown).
   */
  async stop(_graceMs: number): Promise<void> {
    if (this.exited) return;
    void this.worker.terminate();
    await this.exitedPromise;
  }

  protected send(msg: ToChild): void {
    if (!this.exited) this.batch.add(JSONStringify(msg));
  }

  private onText(text: unknown): void {
    if (this.exited) return;
    if (typeof text !== 'string') return this.onMessage(undefined);
    const max = this.maxMessageBytes();
    // Characters first: bytes are at least as many, and at most three times as many.
    if (text.length > max || (text.length * 3 > max && Buffer.byteLength(text) > max)) {
      this.log.warn('worker thread sent a message over the limit; ending it', { limitBytes: max });
      return this.killFor(`it sent a message over ${max} bytes to the runner`);
    }
    let value: unknown;
    try {
      value = JSONParse(text);
    } catch {
      value = undefined;
    }
    for (const msg of unpack(value)) this.onMessage(msg);
  }
}

/**
 * What the pool holds for one worker, whichever kind it is: a child process (child-handle.ts) or a
 * worker thread (thread-handle.ts). The bookkeeping is the same for both and lives here: the attempts
 * the worker holds, the ones abandoned to it, how many it finished, why it was retired or killed,
 * which module versions it has, and what it says, parsed and bound to the attempts it holds. A kind
 * says only how to start, message and end its worker. A worker that ended is never reused.
 */
import { EventEmitter } from 'node:events';
import { limitLog } from '../common/log-limit';
import type { Logger } from '../common/logger';
import type { ReportedError, WireError } from '../protocol/errors';
import { ENVELOPE_BYTES } from '../protocol/limits';
import type { AddReply } from '../protocol/schemas';
import type { AttemptHost } from './attempt-supervisor';
import { MAX_OUTPUT_LINE_BYTES, type ChildOutput } from './child-output';
import type { LoadedModule } from './loader';
import {
  ChildCommand,
  ParentCommand,
  toParentSchema,
  type TaskPayload,
  type ToChild,
  type ToParent,
} from './sandbox-messages';

export interface ChildExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Attempts the worker still held when it ended. */
  keys: string[];
  /** The uncaught error the worker reported just before dying, if any. */
  fatal?: ReportedError;
  /** Ended before it ever reported ready (a broken install rather than a broken task). */
  early: boolean;
}

/** How the pool runs task code: a child process per worker (the default), or a worker thread. */
export type Isolation = 'process' | 'thread';

let nextId = 1;

export abstract class WorkerHost
  extends EventEmitter<{ message: [ToParent]; exit: [ChildExit]; ready: [] }>
  implements AttemptHost
{
  readonly id = nextId++;
  abstract readonly killWarning: string;
  /** `process` or `thread`, for log lines and crash messages. */
  abstract readonly kind: Isolation;
  /** Attempts the worker is running, including cancelled ones that have not settled yet. */
  readonly keys = new Set<string>();
  /** Of those, the ones cancelled or timed out that the worker has not let go of yet. */
  private readonly cancelled = new Set<string>();
  private finishedCount = 0;
  private retiredFor: string | undefined;
  private killReason: string | undefined;
  /** Module name → the one version the worker holds (it keeps only the newest per name). */
  private readonly versions = new Map<string, string>();
  protected fatal: ReportedError | undefined;
  private isReady = false;
  protected exited = false;

  constructor(
    protected readonly log: Logger,
    protected readonly output: ChildOutput,
    protected readonly maxMessageBytes: () => number,
  ) {
    super();
  }

  /** The child's pid; undefined for a thread (it shares the runner's). */
  abstract get pid(): number | undefined;
  /** Ends the worker now, whatever it is doing. */
  protected abstract forceEnd(): void;
  /** Ends the worker, giving it `graceMs` before it is forced; resolves once it has ended. */
  abstract stop(graceMs: number): Promise<void>;
  protected abstract send(msg: ToChild): void;

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

  /** Cancelled or timed-out attempts the worker has not let go of: it may be stuck in one until the kill. */
  get abandoned(): number {
    return this.cancelled.size;
  }

  /** Attempts the worker has reported settled (completed or failed), for recycling after N tasks. */
  get finished(): number {
    return this.finishedCount;
  }

  /** Why the pool is retiring this worker: it takes no new attempt and is stopped once it holds none. */
  get retiring(): string | undefined {
    return this.retiredFor;
  }

  /** Why the worker was killed on purpose, for the ECRASH message of the attempts it took along. */
  get killedFor(): string | undefined {
    return this.killReason;
  }

  retire(reason: string): void {
    this.retiredFor ??= reason;
  }

  holds(key: string): boolean {
    return this.keys.has(key);
  }

  /** Starts an attempt; sends the module's code first unless the worker already holds this version. */
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

  /** Fires the attempt's AbortSignal in the worker; it counts as abandoned until the worker lets go. */
  cancel(key: string, error: WireError): void {
    if (!this.keys.has(key)) return;
    this.cancelled.add(key);
    this.send({ cmd: ChildCommand.Cancel, key, error });
  }

  replyAdd(reqId: number, reply: AddReply): void {
    this.send({ cmd: ChildCommand.AddReply, reqId, reply });
  }

  /** Ends the worker on purpose; the first reason is kept for the ECRASH of every attempt it held. */
  killFor(reason: string): void {
    this.killReason ??= reason;
    this.forceEnd();
  }

  /** The worker ended: every attempt it held goes with it. */
  protected ended(code: number | null, signal: NodeJS.Signals | null): void {
    this.exited = true;
    const keys = [...this.keys];
    this.keys.clear();
    this.emit('exit', { code, signal, keys, fatal: this.fatal, early: !this.isReady });
  }

  /**
   * What the worker says, parsed and bound to this worker: it runs task code, which can send
   * anything over the channel. A report about an attempt this worker does not hold (another
   * worker's, or one it already settled) is dropped, so a task cannot start, advance or settle
   * another's attempt; a task can still do so for the attempts that share its worker (see docs).
   */
  protected onMessage(raw: unknown): void {
    const parsed = toParentSchema.safeParse(raw);
    if (!parsed.success) {
      limitLog(this.log, 'warn', `ipc:${this.id}`, `malformed message from a worker ${this.kind} dropped`, {
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

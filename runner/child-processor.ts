/**
 * The child-side processor: holds the compiled task modules and runs attempts, several at once
 * (async tasks overlap; CPU-bound ones serialize on the event loop). Talks to the parent only
 * through `send` (see sandbox-messages.ts), so it can be exercised without a process around it.
 *
 * Module contract: `module.exports = function (...params) {}` (or `export default`, or
 * `exports.run`), called with `this` bound to the task context. The attempt ends with whichever comes
 * first: the returned value or promise, `this.done(result)`, `this.error(err)`. A function that returns
 * `undefined` synchronously is taken to be an original-style task and ends only through done/error.
 */
import Module from 'node:module';
import path from 'node:path';
import { capError, fromThrown, TaskmasterError, wireError, type ReportedError } from '../protocol/errors';
import { MAX_OUTPUT_LINE_BYTES } from './child-output';
import {
  ChildCommand,
  ParentCommand,
  type LogLevel,
  type StartMessage,
  type TaskPayload,
  type ToChild,
  type ToParent,
} from './sandbox-messages';
import type { TaskContext, TaskFunction, TaskLog } from './task-context';

/**
 * What the processor builds and reads results with, captured when the child starts, before any task
 * runs. Tasks share the process and may replace globals (`JSON.parse = ...`); a task doing so must
 * not change what its neighbours' results become. The rest of what tasks share is listed in the docs.
 */
const JSONStringify = JSON.stringify;
const JSONParse = JSON.parse;
const ObjectDefineProperty = Object.defineProperty;
const ObjectFreeze = Object.freeze;
const ArrayIsArray = Array.isArray;
const BufferByteLength = Buffer.byteLength;
/** `memoryUsage.rss()` reads one number instead of walking the heap spaces like `memoryUsage()`. */
const readRss = process.memoryUsage.rss;

/**
 * The RSS, read once per turn of the event loop: each read opens, reads and closes /proc/self/stat
 * (three system calls), and the outcomes settled in one turn would each read the same number.
 */
function rssOncePerTurn(read: () => number = readRss): () => number {
  let cached: number | undefined;
  const forget = () => void (cached = undefined);
  return () => {
    if (cached === undefined) {
      cached = read();
      setImmediate(forget);
    }
    return cached;
  };
}

interface CompiledModule {
  hash: string;
  fn?: TaskFunction;
  error?: ReportedError;
}

interface Running {
  ctx: TaskContext;
  controller: AbortController;
  settled: boolean;
}

// Node's CommonJS internals used to compile a module without registering it in require.cache.
interface InternalModule extends Module {
  _compile(code: string, filename: string): unknown;
}
const ModuleCtor = Module as unknown as {
  new (id: string): InternalModule;
  _nodeModulePaths(dir: string): string[];
};

export class ChildProcessor {
  /** Newest version per module name only: older versions become garbage once their tasks end. */
  private modules = new Map<string, CompiledModule>();
  private running = new Map<string, Running>();
  private addRequests = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private nextReqId = 1;
  /** What the runner lets this child send per message (its latest Start says): bytes of JSON. */
  private room = Infinity;
  /** Attempts announced and not run yet: those of the message being read. */
  private pending: { msg: StartMessage; mod: CompiledModule | undefined; run: Running }[] = [];
  private readonly flush: () => void;
  private readonly memory: () => number;

  /**
   * `send` may hold messages until the end of the tick; `flush` sends them at once. `memory` is what
   * recycling measures, sent with each outcome: the resident set for a process (the default), the
   * heap for a thread, which shares the resident set with the runner.
   */
  constructor(
    private readonly send: (msg: ToParent) => void,
    opts: { flush?: () => void; memory?: () => number } = {},
  ) {
    this.flush = opts.flush ?? (() => undefined);
    this.memory = opts.memory ?? rssOncePerTurn();
  }

  get activeCount(): number {
    return this.running.size;
  }

  handle(msg: ToChild): void {
    switch (msg.cmd) {
      case ChildCommand.Load:
        this.modules.set(msg.module, compile(msg.hash, msg.path, msg.code));
        return;
      case ChildCommand.Start:
        this.start(msg);
        return;
      case ChildCommand.Cancel: {
        const r = this.running.get(msg.key);
        if (r && !r.controller.signal.aborted)
          r.controller.abort(new TaskmasterError(msg.error.code, msg.error.message));
        return;
      }
      case ChildCommand.AddReply: {
        const req = this.addRequests.get(msg.reqId);
        if (!req) return;
        this.addRequests.delete(msg.reqId);
        if (msg.reply.ok) req.resolve(msg.reply.tasks);
        else
          req.reject(
            new TaskmasterError(msg.reply.error.code, msg.reply.error.message, msg.reply.error.details),
          );
        return;
      }
    }
  }

  /**
   * Takes an attempt; it runs once the message it came in has been read. The module version is
   * looked up now: a later Load in the same message is for a later attempt.
   */
  private start(msg: StartMessage): void {
    const { key, task } = msg;
    if (this.running.has(key)) return;
    this.room = msg.room;
    const mod = this.modules.get(task.module);
    const controller = new AbortController();
    const run: Running = { ctx: this.context(key, task, controller.signal), controller, settled: false };
    this.running.set(key, run);
    if (this.pending.push({ msg, mod, run }) === 1) queueMicrotask(this.runPending);
  }

  /**
   * Runs the attempts of one message, each announced (`Started`, with whatever was said meanwhile)
   * just before its function is entered: a task that then holds the thread is still seen running, and
   * the announcement of the last attempt of a message does not go out while the earlier ones run
   * their synchronous parts. The master's rate limits count a start from its report, so a report
   * written long before the start (all of a message's, before any ran) let a window hold one start
   * too many.
   */
  private readonly runPending = (): void => {
    const list = this.pending;
    this.pending = [];
    for (const p of list) {
      this.send({ cmd: ParentCommand.Started, key: p.msg.key });
      this.flush();
      this.execute(p.msg, p.mod, p.run);
    }
  };

  private execute(msg: StartMessage, mod: CompiledModule | undefined, run: Running): void {
    const { key, task } = msg;
    if (!mod || mod.hash !== msg.hash) {
      // The parent sends a Load before the first Start of each version, so this is a bookkeeping slip,
      // not a broken module: let the master retry the attempt.
      return this.fail(
        key,
        wireError('EMODULE', `module "${task.module}" version ${msg.hash} was not loaded`),
      );
    }
    if (mod.error || !mod.fn) return this.fail(key, mod.error ?? wireError('EMODULE'), true);

    let returned: unknown;
    try {
      returned = mod.fn.apply(run.ctx, task.params);
    } catch (err) {
      return this.failThrown(key, err);
    }
    if (isThenable(returned)) {
      returned.then(
        (value) => this.complete(key, value),
        (err: unknown) => this.failThrown(key, err),
      );
    } else if (returned !== undefined) {
      this.complete(key, returned);
    }
  }

  private context(key: string, task: TaskPayload, signal: AbortSignal): TaskContext {
    const log = (level: LogLevel) => (message: unknown, meta?: Record<string, unknown>) =>
      this.send({ cmd: ParentCommand.Log, key, level, ...boundedLine(message, meta) });
    const taskLog: TaskLog = {
      error: log('error'),
      warn: log('warn'),
      info: log('info'),
      debug: log('debug'),
    };
    const { dependencies, leftOut } = dependencyResults(task);
    return {
      id: task.id,
      attempt: task.attempt,
      module: task.module,
      priority: task.priority,
      batch: task.batch,
      dependencies,
      dependenciesLeftOut: leftOut,
      signal,
      log: taskLog,
      done: (result?: unknown) => this.complete(key, result),
      error: (err?: unknown) => this.failThrown(key, err),
      rateLimited: (ms?: number) => this.fail(key, rateLimitedError(ms)),
      progress: (n: number) => {
        if (this.running.has(key) && Number.isFinite(n))
          this.send({ cmd: ParentCommand.Progress, key, progress: n });
      },
      add: (tasks: unknown, batch?: string) => this.add(key, tasks, batch),
    };
  }

  private add(key: string, tasks: unknown, batch?: string): Promise<unknown> {
    const list = ArrayIsArray(tasks) ? tasks : [tasks];
    const reqId = this.nextReqId++;
    const bytes = jsonBytes(list);
    if (bytes > this.room)
      return Promise.reject(
        new TaskmasterError(
          'ETOOLARGE',
          `the tasks given to this.add are ${bytes} bytes as JSON, over the ${this.room} bytes a worker may send its runner at once; add them in parts`,
          { bytes, limit: this.room },
        ),
      );
    return new Promise((resolve, reject) => {
      this.addRequests.set(reqId, { resolve, reject });
      this.send({
        cmd: ParentCommand.Add,
        key,
        reqId,
        tasks: jsonSafe(list) as unknown[],
        ...(batch ? { batch } : {}),
      });
    });
  }

  private settle(key: string): boolean {
    const r = this.running.get(key);
    if (!r || r.settled) return false;
    r.settled = true;
    this.running.delete(key);
    return true;
  }

  private complete(key: string, value: unknown): void {
    let text: string;
    try {
      text = jsonText(value);
    } catch (err) {
      // The same value would fail the same way on every attempt: not retried.
      return this.fail(
        key,
        wireError('ETASK', `the result is not JSON-serialisable: ${(err as Error).message}`),
        true,
      );
    }
    const bytes = BufferByteLength(text);
    if (!this.settle(key)) return;
    // Too large to send: its size goes instead, and the runner fails the attempt with ETOOLARGE
    // naming the setting, as for any result over its limit.
    if (bytes > this.room)
      this.send({ cmd: ParentCommand.Completed, key, result: null, bytes, rss: this.memory() });
    else
      this.send({
        cmd: ParentCommand.Completed,
        key,
        result: JSONParse(text) as unknown,
        rss: this.memory(),
      });
  }

  private failThrown(key: string, err: unknown): void {
    // The stack stays in the runner's log (debug); only code and message travel to the master.
    if (err instanceof Error && err.stack && this.running.has(key)) {
      this.send({
        cmd: ParentCommand.Log,
        key,
        level: 'debug',
        // The stack starts with the message, which may be megabytes: cut as any log line is.
        ...boundedLine('task error', { stack: cutText(err.stack, MAX_OUTPUT_LINE_BYTES - 256) }),
      });
    }
    let wire = fromThrown(err);
    if (wire.code === 'ERATELIMITED' && isObject(err)) {
      const details = isObject(err.details) ? err.details : {};
      wire = { ...rateLimitedError(err.retryAfter ?? details.retryAfter), message: wire.message };
    }
    const unrecoverable = (isObject(err) && err.unrecoverable === true) || wire.code === 'EMODULE';
    this.fail(key, wire, unrecoverable);
  }

  private fail(key: string, error: ReportedError, unrecoverable = false): void {
    if (error.details !== undefined) {
      const details = jsonSafe(error.details);
      error = details === undefined ? { code: error.code, message: error.message } : { ...error, details };
    }
    // Cut to what an outcome carries, which also keeps it within what the channel takes.
    error = capError(error);
    if (this.settle(key))
      this.send({
        cmd: ParentCommand.Failed,
        key,
        error,
        ...(unrecoverable ? { unrecoverable } : {}),
        rss: this.memory(),
      });
  }
}

/**
 * ERATELIMITED with the wait it asks for (`details.retryAfter`, ms, whole and within what a timer
 * holds); without a usable number, no details, and the master waits its default.
 */
function rateLimitedError(ms: unknown): ReportedError {
  const wait =
    typeof ms === 'number' && Number.isFinite(ms) ? Math.min(2 ** 31 - 1, Math.max(0, Math.round(ms))) : null;
  return wait === null
    ? { code: 'ERATELIMITED', message: 'rate limited' }
    : {
        code: 'ERATELIMITED',
        message: `rate limited: retry after ${wait} ms`,
        details: { retryAfter: wait },
      };
}

/**
 * `this.dependencies`: each dependency's result under its id (own properties, whatever the id); one
 * left out reads as an unrecoverable error saying why, so a sum over them cannot quietly miss one.
 */
function dependencyResults(task: TaskPayload): {
  dependencies: Readonly<Record<string, unknown>>;
  leftOut: readonly string[];
} {
  const dependencies: Record<string, unknown> = {};
  const leftOut: string[] = [];
  for (const d of task.dependencies ?? []) {
    if (d.leftOut === undefined) {
      ObjectDefineProperty(dependencies, d.id, { value: d.result ?? null, enumerable: true });
      continue;
    }
    leftOut.push(d.id);
    const error = leftOutError(d.id, d.leftOut, task.maxDependencyBytes);
    ObjectDefineProperty(dependencies, d.id, {
      enumerable: true,
      get() {
        throw error;
      },
    });
  }
  return { dependencies: ObjectFreeze(dependencies), leftOut: ObjectFreeze(leftOut) };
}

function leftOutError(id: string, bytes: number, limit: number | undefined): TaskmasterError {
  if (bytes === 0)
    return Object.assign(
      new TaskmasterError('EDEPFAILED', `the result of dependency "${id}" is no longer stored (purged)`),
      { unrecoverable: true },
    );
  const max = `the master's maxDependencyBytes (${limit ?? '?'} bytes)`;
  const why =
    limit !== undefined && bytes > limit ? `over ${max}` : `more than the results before it left of ${max}`;
  const err = new TaskmasterError(
    'ETOOLARGE',
    `the result of dependency "${id}" is left out: ${bytes} bytes as JSON, ${why}; raise it (--max-dependency-bytes), or read the result with GET /api/tasks/${encodeURIComponent(id)}`,
    { dependency: id, bytes, limit },
  );
  return Object.assign(err, { unrecoverable: true });
}

/** Evaluates one module version; a throwing top level or a missing function is kept as the error. */
function compile(hash: string, file: string, code: string): CompiledModule {
  try {
    const m = new ModuleCtor(file);
    m.filename = file;
    m.paths = ModuleCtor._nodeModulePaths(path.dirname(file));
    m._compile(code, file);
    m.loaded = true;
    const fn = pickFunction(m.exports);
    if (!fn)
      return {
        hash,
        error: wireError('EMODULE', `module ${file} exports no function (module.exports, default or run)`),
      };
    return { hash, fn };
  } catch (err) {
    const w = fromThrown(err, 'EMODULE');
    return { hash, error: wireError('EMODULE', `module ${file} failed to load: ${w.message}`) };
  }
}

function pickFunction(exp: unknown): TaskFunction | undefined {
  if (typeof exp === 'function') return exp as TaskFunction;
  if (!isObject(exp)) return undefined;
  if (typeof exp.default === 'function') return exp.default as TaskFunction;
  if (typeof exp.run === 'function') return exp.run as TaskFunction;
  // `export default { run }` seen through the ESM → CJS transform.
  if (isObject(exp.default) && typeof exp.default.run === 'function') return exp.default.run as TaskFunction;
  return undefined;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return (typeof v === 'object' || typeof v === 'function') && v !== null;
}

function isThenable(v: unknown): v is PromiseLike<unknown> {
  return isObject(v) && typeof v.then === 'function';
}

/** The value as JSON text, as it will arrive at the master: `undefined` becoming `null`. Throws if impossible. */
function jsonText(v: unknown): string {
  if (v === undefined) return 'null';
  return JSONStringify(v) ?? 'null';
}

/** Bytes of `v` as JSON; Infinity if it cannot be serialised (it is dropped on the way anyway). */
function jsonBytes(v: unknown): number {
  try {
    return BufferByteLength(JSONStringify(v) ?? '');
  } catch {
    return Infinity;
  }
}

function cutText(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max)} … [cut at ${max} characters]`;
}

/** A `this.log` line cut as a line of the task's output is (child-output.ts): it travels in one message. */
function boundedLine(
  message: unknown,
  meta: Record<string, unknown> | undefined,
): { message: string; meta?: Record<string, unknown> } {
  const text = cutText(String(message), MAX_OUTPUT_LINE_BYTES);
  const bytes = meta === undefined ? 0 : jsonBytes(meta);
  if (bytes === Infinity) return { message: text };
  if (bytes > MAX_OUTPUT_LINE_BYTES)
    return { message: text, meta: { metaLeftOut: `${bytes} bytes as JSON, over ${MAX_OUTPUT_LINE_BYTES}` } };
  return { message: text, meta: jsonSafe(meta) as Record<string, unknown> | undefined };
}

/** Best effort for logs and details: a value that cannot be serialised is dropped, not fatal. */
function jsonSafe(v: unknown): unknown {
  if (v === undefined) return undefined;
  try {
    const s = JSONStringify(v);
    return s === undefined ? undefined : (JSONParse(s) as unknown);
  } catch {
    return undefined;
  }
}

import { MAX_ERROR_CODE_CHARS, MAX_ERROR_DETAILS_BYTES, MAX_ERROR_MESSAGE_CHARS } from './limits';

/**
 * Stable error codes. Only `{ code, message, details? }` travels on the wire; `toError` turns one back
 * into an Error on the receiving side.
 */
export const ERROR_CODES = Object.freeze({
  ECSTO: 'global timeout: the task did not finish within `timeout` ms of the call',
  ETO: 'run timeout: the task ran longer than `runTimeout` ms',
  EATO: 'assign timeout: no runner took the task within `assignTimeout` ms',
  EQUEUEFULL: 'the master queue is full; retry later',
  EVALIDATION: 'the request is malformed',
  EMODULE: 'the task module cannot be found or loaded',
  EDEPFAILED: 'a dependency failed, so this task cannot run',
  ECANCELLED: 'the task was cancelled',
  EAUTH: 'missing or wrong token',
  ETLS: "the master's TLS certificate cannot be verified (unknown CA, another host, expired), or only one side speaks TLS",
  ESTALE: 'the result is for an older attempt',
  ETASK: 'the task threw or reported an error',
  ECRASH: 'the worker process running the task died',
  ERUNNERLOST: 'the runner running the task went away',
  EEXEC: 'the runner does not allow this program for the exec task (--allow-exec)',
  EPERSIST: 'the database refused to store the task or its result; it failed and is not retried',
  ETOOLARGE:
    "a result over a size limit: the runner's maxResultBytes (under the master message limit), or the master's maxDependencyBytes for the dependencies' results a task reads",
  ESTANDBY:
    'this master is standby: another master holds the lease and is active; `details.active` is its URL (clients go there)',
  ERUNNERID:
    'this runner id is held by another live connection, or this connection already is another runner',
  EORIGIN: 'cross-origin browser request refused (allowOrigins)',
  ENOTFOUND: 'no such route, task, batch or schedule',
  ENORUNNER: 'no runner with this id is known to the master (drain, undrain)',
  ENOALLOCATION: 'no runner is allocated to this affinity key',
  ESTATE: 'the task is not in a state that allows this (retry needs a failed or cancelled task)',
  EBUSY:
    'too many reads that scan the tasks are running at once (the master option maxScans); retry in a moment',
  ERATELIMITED:
    'the task hit a limit of what it calls (`this.rateLimited(ms)`): it runs again without counting an attempt, after its selectors waited `details.retryAfter` ms',
  EINTERNAL: 'the master failed to handle the request (logged); the request changed nothing it reported',
} as const);

export type ErrorCode = keyof typeof ERROR_CODES;

/** An error this code base builds (`wireError`): its code is a registered one. */
export interface WireError {
  code: ErrorCode;
  message: string;
  details?: unknown;
}

/**
 * An error as it was reported: a task's failure or a peer's refusal. Its code is a registered one or
 * the task's own (`fromThrown` keeps the `code` a task's error carries, e.g. `EPAYMENT`), so on this
 * side it is only a string; every `WireError` is one. The wire's `wireErrorSchema` parses this shape.
 */
export interface ReportedError {
  code: string;
  message: string;
  details?: unknown;
}

export class TaskmasterError extends Error {
  readonly code: string;
  readonly details?: unknown;
  constructor(code: string, message?: string, details?: unknown) {
    super(message ?? (ERROR_CODES as Record<string, string>)[code] ?? code);
    this.name = 'TaskmasterError';
    this.code = code;
    if (details !== undefined) this.details = details;
  }
}

export function wireError(code: ErrorCode, message?: string, details?: unknown): WireError {
  const e: WireError = { code, message: message ?? ERROR_CODES[code] };
  if (details !== undefined) e.details = details;
  return e;
}

export function toError(e: ReportedError): TaskmasterError {
  return new TaskmasterError(e.code, e.message, e.details);
}

/** Turns whatever a task threw into a wire error, keeping a `code` it carries. */
export function fromThrown(err: unknown, fallback: ErrorCode = 'ETASK'): ReportedError {
  if (err && typeof err === 'object') {
    const o = err as { code?: unknown; message?: unknown; details?: unknown };
    const code = typeof o.code === 'string' && o.code ? o.code : fallback;
    const message = typeof o.message === 'string' ? o.message : String(err);
    const w: ReportedError = { code, message };
    if (o.details !== undefined) w.details = o.details;
    return w;
  }
  return { code: fallback, message: String(err) };
}

/**
 * A task's error as an outcome carries it: message, code and details cut to their limits
 * (protocol/limits.ts) with a marker, so one huge error is stored, delivered and shown at a bounded
 * size, and never makes a message too large to send. Returns the same object when it is within them.
 */
export function capError<E extends ReportedError>(e: E): E {
  const over =
    e.message.length > MAX_ERROR_MESSAGE_CHARS ||
    e.code.length > MAX_ERROR_CODE_CHARS ||
    (e.details !== undefined && jsonBytesOver(e.details, MAX_ERROR_DETAILS_BYTES));
  if (!over) return e;
  const capped: E = {
    ...e,
    code: cut(e.code, MAX_ERROR_CODE_CHARS),
    message: cut(e.message, MAX_ERROR_MESSAGE_CHARS),
  };
  if (e.details !== undefined && jsonBytesOver(e.details, MAX_ERROR_DETAILS_BYTES))
    capped.details = { truncated: true, bytes: jsonBytes(e.details), limit: MAX_ERROR_DETAILS_BYTES };
  return capped;
}

function cut(text: string, max: number): string {
  if (text.length <= max) return text;
  const marker = ` … [truncated: ${text.length - max} more characters]`;
  return text.slice(0, Math.max(0, max - marker.length)) + marker;
}

function jsonBytes(v: unknown): number {
  try {
    return Buffer.byteLength(JSON.stringify(v) ?? '');
  } catch {
    return Infinity;
  }
}

function jsonBytesOver(v: unknown, max: number): boolean {
  return jsonBytes(v) > max;
}

/**
 * EDEPFAILED for a task whose dependency `dep` did not succeed. It names the root cause — the task
 * whose own failure started the chain, its code and the start of its message — instead of embedding
 * the dependency's whole message, so along a chain of N tasks each outcome stays the same size
 * (their total is linear in N, not quadratic).
 */
export function depError(dep: string, err: ReportedError | null | undefined): WireError {
  const inherited = err?.code === 'EDEPFAILED' ? rootOf(err.details) : null;
  const root: DepRoot = inherited ?? {
    id: dep,
    code: cut(err?.code ?? 'ETASK', MAX_ERROR_CODE_CHARS),
    message: cut(err?.message ?? '', ROOT_MESSAGE_CHARS),
  };
  const via = root.id === dep ? '' : ` of task "${root.id}"`;
  const said = root.message ? `: ${root.message}` : '';
  return wireError('EDEPFAILED', `dependency "${dep}" failed (root cause: ${root.code}${via}${said})`, {
    dependency: dep,
    root,
  });
}

/** The task a chain of EDEPFAILED started from, as its outcomes name it. */
export interface DepRoot {
  id: string;
  code: string;
  message: string;
}

/** How much of the root cause's message every outcome of its chain repeats. */
const ROOT_MESSAGE_CHARS = 200;

function rootOf(details: unknown): DepRoot | null {
  const r = (details as { root?: Partial<DepRoot> } | null | undefined)?.root;
  if (!r || typeof r.id !== 'string' || typeof r.code !== 'string') return null;
  return {
    id: r.id,
    code: r.code,
    message: typeof r.message === 'string' ? cut(r.message, ROOT_MESSAGE_CHARS) : '',
  };
}

/**
 * The one wrapper every Socket.IO event handler of the master goes through (Socket.IO's `socket.use()`
 * chain is the model): the payload is parsed with its zod schema, the handler runs inside a catch for
 * both thrown errors and rejected promises, a failure is logged once and answered with a stable error
 * code. Nothing a client sends can make an exception escape to the process.
 *
 * Inputs: the socket, the event, its schema and the handler. Output: a listener registered on the
 * socket. The acknowledgement, when the client asked for one, is called at most once.
 *
 * The HTTP routes (http.ts) take the same two steps from here: `validate` for the input and
 * `internalError` for a failure, so a refusal or a crash reads the same on either side.
 */
import type { Socket } from 'socket.io';
import type { z } from 'zod';
import { limitLog } from '../common/log-limit';
import type { Logger } from '../common/logger';
import { wireError, type WireError } from '../protocol/errors';
import { formatIssues, type Issue } from '../protocol/issues';
import { summarize } from './validate';

/** How a refusal is shaped for this event's acknowledgement (most use `{ ok: false, error }`). */
export type Refuse = (error: WireError) => unknown;

export const refuseWithError: Refuse = (error) => ({ ok: false, error });

export interface EventSpec<S extends z.ZodType> {
  schema: S;
  /** Prefix for issue paths, e.g. `hello`. */
  prefix?: string;
  refuse?: Refuse;
  /** Where a refusal goes when the client asked for no acknowledgement (the original protocol's `task:error`). */
  report?: (error: WireError) => void;
}

/** What a handler may do besides returning: answer the acknowledgement, or refuse with a code. */
export interface Reply {
  (value: unknown): void;
  refuse(error: WireError): void;
}

/** Parses with `schema`, or names each field that is wrong (paths under `prefix`). */
export function validate<S extends z.ZodType>(
  schema: S,
  payload: unknown,
  prefix = '',
): { ok: true; data: z.output<S> } | { ok: false; issues: Issue[] } {
  const r = schema.safeParse(payload);
  return r.success ? { ok: true, data: r.data } : { ok: false, issues: formatIssues(r.error.issues, prefix) };
}

/** Parses with `schema`, or returns the EVALIDATION error naming `what` was refused and each field. */
export function parse<S extends z.ZodType>(
  schema: S,
  payload: unknown,
  prefix: string,
  what: string,
): { ok: true; data: z.output<S> } | { ok: false; error: WireError } {
  const r = validate(schema, payload, prefix);
  if (r.ok) return r;
  return { ok: false, error: wireError('EVALIDATION', summarize(r.issues, what), { issues: r.issues }) };
}

/**
 * A handler failed in a way no client caused: logged here, once, with what was being handled; the
 * client gets EINTERNAL and `message`, nothing of the error itself.
 */
export function internalError(
  log: Logger,
  message: string,
  context: Record<string, unknown>,
  err: unknown,
): WireError {
  log.error('handler failed', { ...context, error: errorText(err) });
  return wireError('EINTERNAL', message);
}

/** The map of the events a typed socket listens for (protocol/events.ts, protocol/legacy.ts). */
export type ListenOf<T> = T extends Socket<infer L, infer _Emit, infer _Server, infer _Data> ? L : never;

/** The payload an event of map `L` carries: its listener's first parameter (unknown for none). */
export type PayloadOf<L, E extends keyof L> = L[E] extends (payload: infer P, ...rest: never[]) => unknown
  ? P
  : never;

/**
 * Registers `event` on `socket`: parse, run, catch. The handler's return value (or what its promise
 * resolves to), when not undefined, is the acknowledgement. Typed by the socket's event map: an event
 * the map lacks, or a schema whose input is not the payload the map declares, does not compile.
 */
export function on<
  T extends Pick<Socket, 'id'>,
  E extends keyof ListenOf<T> & string,
  S extends z.ZodType<unknown, PayloadOf<ListenOf<T>, E>>,
>(
  socket: T,
  log: Logger,
  event: E,
  spec: EventSpec<S>,
  handler: (data: z.output<S>, reply: Reply) => unknown,
): void {
  const refuse = spec.refuse ?? refuseWithError;
  // Whatever the map says, a client may send anything, any number of arguments: the listener takes
  // them as unknown and the schema decides. The one place the map's types are left, after checking.
  (socket as unknown as Socket).on(event as string, (...args: unknown[]) => {
    const last = args[args.length - 1];
    const ack = typeof last === 'function' ? (last as (v: unknown) => void) : undefined;
    const payload = ack && args.length === 1 ? undefined : args[0];
    let answered = false;
    const reply = ((value: unknown) => {
      if (answered) return;
      answered = true;
      ack?.(value);
    }) as Reply;
    reply.refuse = (error) => {
      if (ack) reply(refuse(error));
      else spec.report?.(error);
    };
    const fail = (err: unknown) =>
      reply.refuse(
        internalError(log, `${event} failed on the master; see its log`, { event, socket: socket.id }, err),
      );
    try {
      // Named by its event: a client that sends several kinds of message learns which one was wrong.
      const parsed = parse(spec.schema, payload, spec.prefix ?? '', `${event} payload`);
      if (!parsed.ok) {
        limitLog(log, 'warn', `refused:${socket.id}`, 'malformed payload refused', {
          event,
          socket: socket.id,
          error: parsed.error.message,
        });
        return reply.refuse(parsed.error);
      }
      const out = handler(parsed.data, reply);
      if (isPromise(out)) out.then((v) => v !== undefined && reply(v), fail);
      else if (out !== undefined) reply(out);
    } catch (err) {
      fail(err);
    }
  });
}

function isPromise(v: unknown): v is Promise<unknown> {
  return typeof (v as { then?: unknown } | null)?.then === 'function';
}

export function errorText(err: unknown): string {
  if (err instanceof Error) return `${err.name}: ${err.message}`;
  try {
    return String(err);
  } catch {
    return 'unprintable error';
  }
}

/** For the socket's own events (`disconnect`): no payload to parse, but the same catch and log. */
export function onInternal(
  socket: Pick<Socket, 'id' | 'on'>,
  log: Logger,
  event: 'disconnect',
  handler: (...args: unknown[]) => void,
): void {
  socket.on(event, (...args: unknown[]) => {
    try {
      handler(...args);
    } catch (err) {
      log.error('handler failed', { event, socket: socket.id, error: errorText(err) });
    }
  });
}

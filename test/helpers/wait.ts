/**
 * Bounded waits. A bug that makes something never happen must fail its test with a message saying
 * what did not happen, well before jest's own timeout, whose only message is "Exceeded timeout".
 * Each wait takes `what`, the thing awaited (task "x" done); the error reads
 * `waited 30000 ms for: task "x" done`.
 * Waits resolve on events; `eventually` polls, for state that has no event (rows in a database).
 */
import type { EventEmitter } from 'node:events';
import type { Socket } from 'socket.io-client';

/**
 * Short enough to fail inside jest's 60 s test timeout with our own message. The mutation check
 * (test/mutate/run.ts) sets TASKMASTER_TEST_WAIT_MS lower: a broken guarantee's test usually fails by
 * waiting for what no longer happens, and a run of 50 mutants should not spend 30 s on each.
 */
export const WAIT_MS = Number(process.env.TASKMASTER_TEST_WAIT_MS) || 30_000;

export interface WaitOptions {
  /** Default {@link WAIT_MS}. */
  timeout?: number;
  /** What was awaited; the error says it did not happen. Computed when the wait fails, if a function. */
  what?: string | (() => string);
}

export class WaitTimeout extends Error {
  override name = 'WaitTimeout';
}

/**
 * The error a wait fails with, made when the wait begins so that its stack (and jest's code frame)
 * shows the test line that waited rather than a timer; frames of the helpers are left out.
 */
function timeoutError(ms: number, what: string | (() => string)): () => WaitTimeout {
  const site = new Error().stack ?? '';
  return () => {
    const err = new WaitTimeout(`waited ${ms} ms for: ${typeof what === 'function' ? what() : what}`);
    const frames = site
      .split('\n')
      .slice(1)
      .filter((line) => !HELPERS.test(line));
    err.stack = [`${err.name}: ${err.message}`, ...frames].join('\n');
    return err;
  };
}
const HELPERS = /[/\\]test[/\\]helpers[/\\]/;

/** Settles as `promise` does, or rejects after `ms` saying that `what` did not happen. */
export function within<T>(ms: number, promise: Promise<T>, what: string | (() => string)): Promise<T> {
  const error = timeoutError(ms, what);
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(error()), ms);
    // A wait nobody awaits any more (its test ended) must not keep the process up or fail another test.
    timer.unref();
  });
  const bounded = Promise.race([promise, late]).finally(() => clearTimeout(timer));
  bounded.catch(() => undefined);
  return bounded;
}

/** What `waitForEvent` listens to: Node's EventEmitter (masters, runners, feeders) or a client socket. */
export type Emitter = EventEmitter | Socket;

const any = (): boolean => true;

/**
 * Resolves with the arguments of the first `event` for which `test` holds. The fourth argument is a
 * timeout in ms or {@link WaitOptions}; without `what`, the error names the event and the test.
 */
export function waitForEvent<T extends unknown[]>(
  emitter: Emitter,
  event: string,
  test: (...args: T) => boolean = any,
  opts: number | WaitOptions = {},
): Promise<T> {
  const { timeout = WAIT_MS, what } = typeof opts === 'number' ? { timeout: opts } : opts;
  const named = what ?? `"${event}" ${test === any ? 'emitted' : `for which ${test.toString()}`}`;
  // Both kinds have on/off with the same meaning; their typings differ in the event maps only.
  const target = emitter as EventEmitter;
  let on!: (...args: unknown[]) => void;
  const seen = new Promise<T>((resolve) => {
    on = (...args: unknown[]) => {
      if (test(...(args as T))) resolve(args as T);
    };
    target.on(event, on);
  });
  return within(timeout, seen, named).finally(() => target.off(event, on));
}

/**
 * Polls `check` until it returns a truthy value and resolves with it. The second argument is a
 * timeout in ms or {@link WaitOptions}; without `what`, the error quotes `check`.
 */
export async function eventually<T>(
  check: () => Promise<T | undefined | null | false> | T | undefined | null | false,
  opts: number | WaitOptions = {},
): Promise<T> {
  const { timeout = WAIT_MS, what } = typeof opts === 'number' ? { timeout: opts } : opts;
  const error = timeoutError(timeout, what ?? `${check.toString()} to hold`);
  const until = Date.now() + timeout;
  let delay = 20;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > until) throw error();
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 2, 250);
  }
}

/** The first argument of the next `event` (bounded): for events that carry one value. */
export async function nextEvent<T = unknown>(
  emitter: Emitter,
  event: string,
  opts: number | WaitOptions = {},
): Promise<T> {
  const [value] = await waitForEvent<[T]>(emitter, event, any, opts);
  return value;
}

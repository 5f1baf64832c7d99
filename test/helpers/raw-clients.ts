/**
 * Protocol-level clients built on socket.io-client alone, for tests that drive the master's wire
 * contract directly (a runner that holds on to its work, a feeder that counts what it gets).
 */
import { io, type Socket } from 'socket.io-client';
import type { AddReply, Assignment, AttemptResult, TaskOutcome } from '../../protocol/schemas';
import { within, WAIT_MS, type WaitOptions } from './wait';

/** Conditions waited on, re-checked after any raw client receives anything (a condition may span several). */
const checks = new Set<() => void>();

export interface RawRunner {
  socket: Socket;
  assigned: Assignment[];
  cancelled: { id: string; attempt: number }[];
  /** Resolves once `pred` holds after some assignment or cancel (checked at once too); bounded. */
  until(pred: () => boolean, opts?: number | WaitOptions): Promise<void>;
  finish(results: AttemptResult[]): Promise<unknown>;
  close(): void;
}

export async function rawRunner(
  url: string,
  hello: {
    runnerId: string;
    slots: number;
    prioritySlots?: Record<string, number>;
    data?: Record<string, unknown>;
  },
  auth: { token?: string } = {},
): Promise<RawRunner> {
  const socket = io(`${url}/runner`, {
    transports: ['websocket'],
    reconnection: false,
    forceNew: true,
    auth,
  });
  const assigned: Assignment[] = [];
  const cancelled: { id: string; attempt: number }[] = [];
  const poke = () => checks.forEach((c) => c());
  socket.on('task:assign', ({ tasks }: { tasks: Assignment[] }) => {
    assigned.push(...tasks);
    poke();
  });
  socket.on('task:cancel', ({ tasks }: { tasks: { id: string; attempt: number }[] }) => {
    cancelled.push(...tasks);
    poke();
  });
  const reply = (await socket.emitWithAck('runner:hello', { workers: 1, ...hello })) as { ok: boolean };
  if (!reply.ok) throw new Error(`hello refused: ${JSON.stringify(reply)}`);
  return {
    socket,
    assigned,
    cancelled,
    until: (pred, opts) => untilTrue(pred, opts),
    finish: (results) => socket.emitWithAck('task:results', { results }),
    close: () => socket.close(),
  };
}

export interface RawFeeder {
  socket: Socket;
  outcomes: Map<string, TaskOutcome>;
  add(tasks: unknown[], extra?: Record<string, unknown>): Promise<AddReply>;
  until(pred: () => boolean, opts?: number | WaitOptions): Promise<void>;
  close(): void;
}

export async function rawFeeder(url: string, auth: { token?: string } = {}): Promise<RawFeeder> {
  const socket = io(`${url}/feeder`, {
    transports: ['websocket'],
    reconnection: false,
    forceNew: true,
    auth,
  });
  const outcomes = new Map<string, TaskOutcome>();
  socket.on('task:outcomes', ({ outcomes: list }: { outcomes: TaskOutcome[] }) => {
    for (const o of list) outcomes.set(o.id, o);
    checks.forEach((c) => c());
  });
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', () => resolve());
    socket.once('connect_error', reject);
  });
  return {
    socket,
    outcomes,
    add: (tasks, extra = {}) => socket.emitWithAck('tasks:add', { tasks, ...extra }) as Promise<AddReply>,
    until: (pred, opts) => untilTrue(pred, opts),
    close: () => socket.close(),
  };
}

/** Without `what`, the error quotes `pred`. */
function untilTrue(pred: () => boolean, opts: number | WaitOptions = {}): Promise<void> {
  const { timeout = WAIT_MS, what } = typeof opts === 'number' ? { timeout: opts } : opts;
  let check!: () => void;
  const held = new Promise<void>((resolve) => {
    check = () => {
      if (pred()) resolve();
    };
    checks.add(check);
    check();
  });
  return within(timeout, held, what ?? `${pred.toString()} to hold`).finally(() => checks.delete(check));
}

/**
 * The wire contract: one event map per direction, used as Socket.IO's generics on both ends so a
 * renamed field fails to compile everywhere. Every payload is still parsed with its zod schema on
 * receipt (see schemas.ts): the types say what a well-behaved peer sends, the schemas check it.
 *
 * Namespaces on the master's URL:
 *   /runner   runners (this protocol)
 *   /feeder   feeders (this protocol)
 *   /dashboard  read-only live view for the dashboard (master/dashboard.ts): it only listens
 *   /         the original taskmaster events (legacy.ts), unchanged
 */
import type { z } from 'zod';
import type {
  AddReply,
  cancelReplySchema,
  sysmsgReplySchema,
  AddRequest,
  Assignment,
  AttemptResult,
  Hello,
  HelloReply,
  ModuleInfo,
  TaskOutcome,
  attemptRefSchema,
  resultsAckSchema,
  watchReplySchema,
} from './schemas';

export const NAMESPACES = Object.freeze({
  runner: '/runner',
  feeder: '/feeder',
  dashboard: '/dashboard',
  legacy: '/',
} as const);

export type AttemptRef = z.infer<typeof attemptRefSchema>;
export type ResultsAck = z.infer<typeof resultsAckSchema>;
export type WatchReply = z.infer<typeof watchReplySchema>;
export type CancelReply = z.infer<typeof cancelReplySchema>;
export type SysmsgReply = z.infer<typeof sysmsgReplySchema>;
export interface SysmsgRequest {
  msg: unknown;
  to?: 'MASTER' | string | null;
}
/** A system message as recipients get it; they acknowledge it so the sender knows it arrived. */
export interface Sysmsg {
  msg: unknown;
  from: string;
}

export interface Progress {
  id: string;
  attempt: number;
  progress: number;
}

export interface RunnerToMaster {
  /** First message after every (re)connect; the master answers with attempts the runner must drop. */
  'runner:hello': (hello: Hello, ack: (reply: HelloReply) => void) => void;
  'task:started': (payload: { tasks: AttemptRef[] }) => void;
  /** Batched results; the runner keeps each until it is acknowledged (durably written). */
  'task:results': (payload: { results: AttemptResult[] }, ack: (reply: ResultsAck) => void) => void;
  'task:progress': (payload: Progress) => void;
  'runner:modules': (payload: { modules: ModuleInfo[] }) => void;
  /** The runner is shutting down: send it no new work. */
  'runner:draining': () => void;
  /** Attempts the runner gives back unfinished (shutdown grace ran out): requeue them at once. */
  'task:release': (
    payload: { tasks: AttemptRef[] },
    ack: (reply: { ok: boolean; released: number }) => void,
  ) => void;
  /** Follow-up tasks added by a running task through `this.add(tasks)`. */
  'tasks:add': (req: AddRequest, ack: (reply: AddReply) => void) => void;
  'sysmsg:send': (req: SysmsgRequest, ack: (reply: SysmsgReply) => void) => void;
}

export interface MasterToRunner {
  'task:assign': (payload: { tasks: Assignment[] }) => void;
  sysmsg: (m: Sysmsg, ack: () => void) => void;
  /** Stop these attempts (cancelled, timed out, or reassigned); no result is expected. */
  'task:cancel': (payload: { tasks: AttemptRef[]; reason: string }) => void;
}

export interface FeederToMaster {
  'tasks:add': (req: AddRequest, ack: (reply: AddReply) => void) => void;
  /** Subscribe to outcomes; final ones already known are returned at once. */
  'tasks:watch': (req: { ids: string[] }, ack: (reply: WatchReply) => void) => void;
  /** Cancel tasks by id or a whole batch; running attempts are aborted, dependents fail. */
  'tasks:cancel': (req: { ids?: string[]; batch?: string }, ack: (reply: CancelReply) => void) => void;
  'sysmsg:send': (req: SysmsgRequest, ack: (reply: SysmsgReply) => void) => void;
}

export interface MasterToFeeder {
  'task:outcomes': (payload: { outcomes: TaskOutcome[] }) => void;
  'task:progress': (payload: Progress) => void;
  sysmsg: (m: Sysmsg, ack: () => void) => void;
}

/** Handshake `auth` object for every namespace. */
export interface HandshakeAuth {
  token?: string;
  role?: 'runner' | 'feeder';
}

/** Milliseconds a client waits for an acknowledgement before giving up on that emit. */
export const ACK_TIMEOUT_MS = 30_000;

/**
 * The wire contract: one event map per direction, used as Socket.IO's generics on both ends so a
 * renamed field fails to compile everywhere. Every payload type is inferred from its zod schema in
 * schemas.ts (what a sender may send: `z.input`; what an acknowledgement carries: `z.output`), and
 * every payload is still parsed with that schema on receipt: the types say what a well-behaved peer
 * sends, the schemas check it. test/types/event-maps.ts pins each event to its schema.
 *
 * Namespaces on the master's URL:
 *   /runner   runners (this protocol)
 *   /feeder   feeders (this protocol)
 *   /dashboard  read-only live view for the dashboard (master/http/dashboard.ts): it only listens
 *   /         the original taskmaster events (legacy.ts), unchanged
 */
import type { z } from 'zod';
import type {
  addReplySchema,
  addRequestSchema,
  assignSchema,
  attemptRefSchema,
  cancelReplySchema,
  cancelRequestSchema,
  cancelSchema,
  helloReplySchema,
  helloSchema,
  modulesUpdateSchema,
  outcomesSchema,
  progressSchema,
  releaseReplySchema,
  resultsAckSchema,
  resultsSchema,
  startedSchema,
  sysmsgReplySchema,
  sysmsgRequestSchema,
  sysmsgSchema,
  watchReplySchema,
  watchRequestSchema,
} from './schemas';
import type {
  scheduleInputSchema,
  scheduleListReplySchema,
  scheduleListRequestSchema,
  schedulePutReplySchema,
  scheduleRemoveReplySchema,
  scheduleRemoveRequestSchema,
} from './schedules';

export const NAMESPACES = Object.freeze({
  runner: '/runner',
  feeder: '/feeder',
  dashboard: '/dashboard',
  legacy: '/',
} as const);

/** What a sender may put in a payload. */
type Sent<S extends z.ZodType> = z.input<S>;
/** What a receiver has after parsing (defaults filled in). */
type Got<S extends z.ZodType> = z.output<S>;

export type AttemptRef = Got<typeof attemptRefSchema>;
export type ResultsAck = Got<typeof resultsAckSchema>;
export type WatchReply = Got<typeof watchReplySchema>;
export type CancelReply = Got<typeof cancelReplySchema>;
export type SysmsgReply = Got<typeof sysmsgReplySchema>;
export type ReleaseReply = Got<typeof releaseReplySchema>;
export type SysmsgRequest = Sent<typeof sysmsgRequestSchema>;
/** A system message as recipients get it; they acknowledge it so the sender knows it arrived. */
export type Sysmsg = Got<typeof sysmsgSchema>;
export type Progress = Got<typeof progressSchema>;

export interface RunnerToMaster {
  /** First message after every (re)connect; the master answers with attempts the runner must drop. */
  'runner:hello': (
    hello: Sent<typeof helloSchema>,
    ack: (reply: Got<typeof helloReplySchema>) => void,
  ) => void;
  'task:started': (payload: Sent<typeof startedSchema>) => void;
  /** Batched results; the runner keeps each until it is acknowledged (durably written). */
  'task:results': (payload: Sent<typeof resultsSchema>, ack: (reply: ResultsAck) => void) => void;
  'task:progress': (payload: Sent<typeof progressSchema>) => void;
  'runner:modules': (payload: Sent<typeof modulesUpdateSchema>) => void;
  /** The runner is shutting down: send it no new work. */
  'runner:draining': () => void;
  /** Attempts the runner gives back unfinished (shutdown grace ran out): requeue them at once. */
  'task:release': (payload: Sent<typeof startedSchema>, ack: (reply: ReleaseReply) => void) => void;
  /** Follow-up tasks added by a running task through `this.add(tasks)`. */
  'tasks:add': (req: Sent<typeof addRequestSchema>, ack: (reply: Got<typeof addReplySchema>) => void) => void;
  'sysmsg:send': (req: SysmsgRequest, ack: (reply: SysmsgReply) => void) => void;
}

export interface MasterToRunner {
  'task:assign': (payload: Sent<typeof assignSchema>) => void;
  sysmsg: (m: Sent<typeof sysmsgSchema>, ack: () => void) => void;
  /** Stop these attempts (cancelled, timed out, or reassigned); no result is expected. */
  'task:cancel': (payload: Sent<typeof cancelSchema>) => void;
}

export interface FeederToMaster {
  'tasks:add': (req: Sent<typeof addRequestSchema>, ack: (reply: Got<typeof addReplySchema>) => void) => void;
  /** Subscribe to outcomes; final ones already known are returned at once. */
  'tasks:watch': (req: Sent<typeof watchRequestSchema>, ack: (reply: WatchReply) => void) => void;
  /** Cancel tasks by id or a whole batch; running attempts are aborted, dependents fail. */
  'tasks:cancel': (req: Sent<typeof cancelRequestSchema>, ack: (reply: CancelReply) => void) => void;
  'sysmsg:send': (req: SysmsgRequest, ack: (reply: SysmsgReply) => void) => void;
  /** Creates or changes a recurring schedule (idempotent: the same definition changes nothing). */
  'schedules:put': (
    req: Sent<typeof scheduleInputSchema>,
    ack: (reply: Got<typeof schedulePutReplySchema>) => void,
  ) => void;
  /** Removes a schedule: no slot of it fires from then on. */
  'schedules:remove': (
    req: Sent<typeof scheduleRemoveRequestSchema>,
    ack: (reply: Got<typeof scheduleRemoveReplySchema>) => void,
  ) => void;
  'schedules:list': (
    req: Sent<typeof scheduleListRequestSchema>,
    ack: (reply: Got<typeof scheduleListReplySchema>) => void,
  ) => void;
}

export interface MasterToFeeder {
  'task:outcomes': (payload: Sent<typeof outcomesSchema>) => void;
  'task:progress': (payload: Sent<typeof progressSchema>) => void;
  sysmsg: (m: Sent<typeof sysmsgSchema>, ack: () => void) => void;
}

/** Milliseconds a client waits for an acknowledgement before giving up on that emit. */
export const ACK_TIMEOUT_MS = 30_000;

/**
 * Type tests of the wire contract, checked by `npm run typecheck` (never run), in the spirit of
 * Socket.IO's test/socket.io.test-d.ts. Each direction's event map must be exactly what its zod
 * schemas say: a payload is the schema's input (what a sender may send), an acknowledgement the reply
 * schema's output (what the receiver has after parsing). An event added to a map without a schema
 * here, a schema here with no event, or a payload type written by hand that drifts from its schema
 * fails the typecheck and names the event. The `@ts-expect-error` lines check that Socket.IO's
 * generics carry the maps to both ends.
 */
import type { Server, Socket as ServerSocket } from 'socket.io';
import type { ErrorCode, ReportedError, WireError } from '../../protocol/errors';
import type { Socket as ClientSocket } from 'socket.io-client';
import type { z } from 'zod';
import type { FeederToMaster, MasterToFeeder, MasterToRunner, RunnerToMaster } from '../../protocol/events';
import type { LegacyClientToMaster, LegacyMasterToClient } from '../../protocol/legacy';
import type { legacyAddSchema, legacyDonePayloadSchema } from '../../protocol/legacy';
import type {
  addReplySchema,
  addRequestSchema,
  assignSchema,
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
  wireErrorSchema,
} from '../../protocol/schemas';
import type {
  scheduleInputSchema,
  scheduleListReplySchema,
  scheduleListRequestSchema,
  schedulePutReplySchema,
  scheduleRemoveReplySchema,
  scheduleRemoveRequestSchema,
} from '../../protocol/schedules';

type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
type Expect<T extends true> = T;
/** Fails with the names of the events that drifted (`Type '"task:started"' does not satisfy … 'never'`). */
type NoDrift<Events extends never> = Events;

/** One event: its payload schema (none: no payload) and, when acknowledged, the reply's schema. */
interface Contract {
  payload?: z.ZodType;
  /** `true`: acknowledged with no value (a system message's receipt). */
  reply?: z.ZodType | true;
}

/** The listener type a contract gives. */
type Listener<C extends Contract> = C extends { payload: infer P extends z.ZodType }
  ? C extends { reply: infer R extends z.ZodType }
    ? (payload: z.input<P>, ack: (reply: z.output<R>) => void) => void
    : C extends { reply: true }
      ? (payload: z.input<P>, ack: () => void) => void
      : (payload: z.input<P>) => void
  : () => void;

/** Events whose map entry differs from the contract, is missing from it, or has none: `never` when they agree. */
type Drift<Map, Contracts extends Record<string, Contract>> = {
  [E in keyof Map | keyof Contracts]: E extends keyof Map
    ? E extends keyof Contracts
      ? Equal<Map[E], Listener<Contracts[E]>> extends true
        ? never
        : E
      : E
    : E;
}[keyof Map | keyof Contracts];

type RunnerToMasterContracts = {
  'runner:hello': { payload: typeof helloSchema; reply: typeof helloReplySchema };
  'task:started': { payload: typeof startedSchema };
  'task:results': { payload: typeof resultsSchema; reply: typeof resultsAckSchema };
  'task:progress': { payload: typeof progressSchema };
  'runner:modules': { payload: typeof modulesUpdateSchema };
  'runner:draining': Record<never, never>;
  'task:release': { payload: typeof startedSchema; reply: typeof releaseReplySchema };
  'tasks:add': { payload: typeof addRequestSchema; reply: typeof addReplySchema };
  'sysmsg:send': { payload: typeof sysmsgRequestSchema; reply: typeof sysmsgReplySchema };
};

type MasterToRunnerContracts = {
  'task:assign': { payload: typeof assignSchema };
  sysmsg: { payload: typeof sysmsgSchema; reply: true };
  'task:cancel': { payload: typeof cancelSchema };
};

type FeederToMasterContracts = {
  'tasks:add': { payload: typeof addRequestSchema; reply: typeof addReplySchema };
  'tasks:watch': { payload: typeof watchRequestSchema; reply: typeof watchReplySchema };
  'tasks:cancel': { payload: typeof cancelRequestSchema; reply: typeof cancelReplySchema };
  'sysmsg:send': { payload: typeof sysmsgRequestSchema; reply: typeof sysmsgReplySchema };
  'schedules:put': { payload: typeof scheduleInputSchema; reply: typeof schedulePutReplySchema };
  'schedules:remove': {
    payload: typeof scheduleRemoveRequestSchema;
    reply: typeof scheduleRemoveReplySchema;
  };
  'schedules:list': { payload: typeof scheduleListRequestSchema; reply: typeof scheduleListReplySchema };
};

type MasterToFeederContracts = {
  'task:outcomes': { payload: typeof outcomesSchema };
  'task:progress': { payload: typeof progressSchema };
  sysmsg: { payload: typeof sysmsgSchema; reply: true };
};

/** The original protocol: what it receives is parsed; `task:send` and `task:added` are its own JSON. */
type LegacyClientToMasterContracts = {
  'task:request': Record<never, never>;
  'task:done': { payload: typeof legacyDonePayloadSchema };
  'task:add': { payload: typeof legacyAddSchema };
};

export type EventMapsMatchSchemas = [
  NoDrift<Drift<RunnerToMaster, RunnerToMasterContracts>>,
  NoDrift<Drift<MasterToRunner, MasterToRunnerContracts>>,
  NoDrift<Drift<FeederToMaster, FeederToMasterContracts>>,
  NoDrift<Drift<MasterToFeeder, MasterToFeederContracts>>,
  NoDrift<Drift<LegacyClientToMaster, LegacyClientToMasterContracts>>,
  Expect<Equal<Parameters<LegacyMasterToClient['task:error']>[0], z.output<typeof wireErrorSchema>>>,
  // An error built here carries a registered code; what the wire carries is any reported error.
  Expect<Equal<WireError['code'], ErrorCode>>,
  Expect<Equal<z.output<typeof wireErrorSchema>, ReportedError>>,
];

// Socket.IO carries the maps to both ends: a wrong payload does not compile on either side.
declare const runnerSide: ClientSocket<MasterToRunner, RunnerToMaster>;
declare const feederSide: ClientSocket<MasterToFeeder, FeederToMaster>;
declare const masterSide: Server<RunnerToMaster, MasterToRunner>;
declare const runnerConn: ServerSocket<RunnerToMaster, MasterToRunner>;

export function wellTyped(): void {
  runnerSide.emit('task:started', { tasks: [{ id: 'a', attempt: 1 }] });
  // @ts-expect-error an attempt reference needs its attempt number
  runnerSide.emit('task:started', { tasks: [{ id: 'a' }] });
  // @ts-expect-error no such event from a runner
  runnerSide.emit('task:assign', { tasks: [] });
  runnerSide.on('task:cancel', (p) => p.tasks.map((t) => t.attempt));
  feederSide.emit('tasks:cancel', { batch: 'b' }, (reply) => (reply.ok ? reply.cancelled : reply.error.code));
  // @ts-expect-error ids are strings
  feederSide.emit('tasks:watch', { ids: [1] }, () => undefined);
  runnerConn.emit('task:cancel', { tasks: [{ id: 'a', attempt: 2 }], reason: 'ECANCELLED' });
  // @ts-expect-error the master does not send results
  runnerConn.emit('task:results', { results: [] });
  runnerConn.emit('sysmsg', { msg: 'hi', from: 'MASTER' }, () => undefined);
  masterSide.of('/runner').emit('task:assign', { tasks: [] });
}

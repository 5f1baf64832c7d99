/**
 * Type tests of master/handler.ts's `on`, checked by `npm run typecheck` (never run): registering a
 * handler keeps the socket's event map (protocol/events.ts), so an event the map lacks, or a schema
 * whose payload is not the one the map declares for the event, does not compile.
 */
import type { DefaultEventsMap, Socket } from 'socket.io';
import { z } from 'zod';
import type { Logger } from '../../common/logger';
import { on } from '../../master/handler';
import type { FeederToMaster, MasterToFeeder, MasterToRunner, RunnerToMaster } from '../../protocol/events';
import { helloSchema, startedSchema, watchRequestSchema } from '../../protocol/schemas';

type RunnerSocket = Socket<RunnerToMaster, MasterToRunner, DefaultEventsMap, { runnerId?: string }>;
type FeederSocket = Socket<FeederToMaster, MasterToFeeder>;

export function registration(runner: RunnerSocket, feeder: FeederSocket, log: Logger): void {
  on(runner, log, 'runner:hello', { schema: helloSchema }, (h) => h.runnerId.length);
  on(runner, log, 'task:started', { schema: startedSchema }, (p) => p.tasks.length);
  on(runner, log, 'runner:draining', { schema: z.unknown() }, () => undefined);
  on(feeder, log, 'tasks:watch', { schema: watchRequestSchema }, (p) => p.ids.length);
  // @ts-expect-error an event no map has
  on(runner, log, 'runner:helo', { schema: helloSchema }, () => undefined);
  // @ts-expect-error a feeder's event on a runner's socket
  on(runner, log, 'tasks:watch', { schema: watchRequestSchema }, () => undefined);
  // @ts-expect-error another event's schema: its payload is not task:started's
  on(runner, log, 'task:started', { schema: helloSchema }, () => undefined);
  // @ts-expect-error a schema that lets any payload through where the map declares one
  on(feeder, log, 'tasks:watch', { schema: z.unknown() }, () => undefined);
}

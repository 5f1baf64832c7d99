/**
 * The sandbox protocol between the runner (parent) and its child processes, after BullMQ's
 * ChildCommand/ParentCommand pair: one small enum per direction and a discriminated union of
 * messages. Everything here travels as JSON over the worker's channel (worker-channel.ts).
 *
 * An attempt is named by its `key` (`<id>#<attempt>`), so a late message about attempt 3 can never
 * be mistaken for attempt 4 of the same task.
 */
import { z } from 'zod';
import type { ReportedError } from '../protocol/errors';
import { wireErrorSchema, type AddReply, type DependencyResult } from '../protocol/schemas';

/** Parent → child. */
export enum ChildCommand {
  /** Compiled code of one module version; the child keeps only the newest per module name. */
  Load = 'load',
  /** Run one attempt with the module version loaded last under its name. */
  Start = 'start',
  /** Fire the attempt's AbortSignal (cancel or run timeout); the child still reports when it settles. */
  Cancel = 'cancel',
  /** The master's answer to a task's `this.add(tasks)`. */
  AddReply = 'add-reply',
}

/** Child → parent. */
export enum ParentCommand {
  /** The child has installed its handlers and can take work. */
  Ready = 'ready',
  Started = 'started',
  /** Completed and Failed carry the child's resident set size, so the pool can retire a bloated child. */
  Completed = 'completed',
  Failed = 'failed',
  Progress = 'progress',
  Log = 'log',
  /** A task called `this.add(tasks)`; the parent relays it to the master. */
  Add = 'add',
  /** The child is about to die of an uncaught error; sent so the crash can be explained. */
  Fatal = 'fatal',
}

/** What the child needs to know about an attempt (the assignment minus what it does not use). */
export interface TaskPayload {
  id: string;
  attempt: number;
  module: string;
  params: unknown[];
  priority: number;
  batch?: string;
  /** Its dependencies' results, as the assignment carries them (the task's `this.dependencies`). */
  dependencies?: DependencyResult[];
  /** The master's limit, named to the task when some result is left out. */
  maxDependencyBytes?: number;
}

export interface LoadMessage {
  cmd: ChildCommand.Load;
  module: string;
  hash: string;
  path: string;
  code: string;
}
export interface StartMessage {
  cmd: ChildCommand.Start;
  key: string;
  hash: string;
  task: TaskPayload;
  /**
   * Largest result, added tasks or error (bytes of JSON) the child may send for this attempt; the
   * channel refuses longer messages by killing the child, so the child checks first.
   */
  room: number;
}
export interface CancelMessage {
  cmd: ChildCommand.Cancel;
  key: string;
  error: ReportedError;
}
export interface AddReplyMessage {
  cmd: ChildCommand.AddReply;
  reqId: number;
  reply: AddReply;
}
export type ToChild = LoadMessage | StartMessage | CancelMessage | AddReplyMessage;

export type LogLevel = 'error' | 'warn' | 'info' | 'debug';

/**
 * What a child may say, parsed on receipt: the child runs task code, which can write anything to the
 * channel (its file descriptor 3), so a message of any other shape is dropped and logged.
 */
export const toParentSchema = z.discriminatedUnion('cmd', [
  z.object({ cmd: z.literal(ParentCommand.Ready) }),
  z.object({ cmd: z.literal(ParentCommand.Started), key: z.string() }),
  z.object({
    cmd: z.literal(ParentCommand.Completed),
    key: z.string(),
    result: z.unknown(),
    /** Set instead of a result that was too large to send: its size as JSON. */
    bytes: z.number().int().nonnegative().optional(),
    rss: z.number().optional(),
  }),
  z.object({
    cmd: z.literal(ParentCommand.Failed),
    key: z.string(),
    error: wireErrorSchema,
    unrecoverable: z.boolean().optional(),
    rss: z.number().optional(),
  }),
  z.object({ cmd: z.literal(ParentCommand.Progress), key: z.string(), progress: z.number().finite() }),
  z.object({
    cmd: z.literal(ParentCommand.Log),
    key: z.string().optional(),
    level: z.enum(['error', 'warn', 'info', 'debug']),
    message: z.string(),
    meta: z.record(z.string(), z.unknown()).optional(),
  }),
  z.object({
    cmd: z.literal(ParentCommand.Add),
    key: z.string(),
    reqId: z.number().int(),
    tasks: z.array(z.unknown()),
    batch: z.string().optional(),
  }),
  z.object({ cmd: z.literal(ParentCommand.Fatal), error: wireErrorSchema }),
]);

export type ToParent = z.output<typeof toParentSchema>;

export function attemptKey(id: string, attempt: number): string {
  return `${id}#${attempt}`;
}

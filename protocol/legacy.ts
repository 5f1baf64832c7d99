/**
 * The original taskmaster events, served unchanged on the default namespace:
 *   runner: emits `task:request`, receives `task:send` (JSON string with _id, module, params,
 *           priority), reports with `task:done` (JSON string or object with _id and result or error)
 *   feeder: emits `task:add` (one task or an array), receives `task:added` (the stored tasks with _id)
 * Errors the original had no event for go out as `task:error` ({ code, message, details }).
 */
import { z } from 'zod';
import { MAX_DEPENDENCIES, moduleName, type wireErrorSchema } from './schemas';

export interface LegacyClientToMaster {
  'task:request': () => void;
  'task:done': (task: z.input<typeof legacyDonePayloadSchema>) => void;
  'task:add': (tasks: z.input<typeof legacyAddSchema>) => void;
}

export interface LegacyMasterToClient {
  'task:send': (taskJSON: string) => void;
  'task:added': (tasks: LegacyStoredTask[]) => void;
  'task:error': (err: z.infer<typeof wireErrorSchema>) => void;
}

export interface LegacyStoredTask {
  _id: string;
  id: string;
  module: string;
  params: unknown[];
  priority: number;
  dependencies: string[];
  created: number;
}

export const legacyTaskSchema = z.object({
  module: moduleName,
  priority: z.number().finite().optional(),
  // The original schema stored params as an array; a lone value is wrapped like mongoose did.
  params: z.unknown().optional(),
  dependencies: z
    .array(z.union([z.string(), z.object({ _id: z.string() })]))
    .max(MAX_DEPENDENCIES)
    .optional(),
});

/** `task:add` carries one task or an array of them; issues are named `tasks[i]` either way. */
export const legacyAddSchema = z.preprocess((v) => (Array.isArray(v) ? v : [v]), z.array(legacyTaskSchema));

/** `task:done` carries a JSON string or the object itself (then parsed with `legacyDoneSchema`). */
export const legacyDonePayloadSchema = z.union([z.string(), z.record(z.string(), z.unknown())]);

export const legacyDoneSchema = z.object({
  _id: z.string(),
  result: z.unknown().optional(),
  error: z.unknown().optional(),
});

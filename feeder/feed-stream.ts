/**
 * `taskmaster feed` of an NDJSON file larger than one message: the tasks go to the master in adds
 * of about half a message each, read back from the file as they go (feeder/batch-index.ts), so the
 * feed holds one add's tasks at a time, not the file's. Dependencies first: a task is sent in the
 * same add as the tasks of the file it depends on, or after them (the master refuses a dependency on
 * an id it does not know yet); in a file that lists them in that order, the file is read once more
 * front to back. Ids are scoped to the batch as `scopeIds` does.
 *
 * Like any batch too large for one message (`Feeder.addBatch`), each add is atomic on its own: a
 * refusal names what the earlier ones stored, and its issues name the file's task (`tasks[i]`, i in
 * file order) so the CLI can point at the line.
 */
import { TaskmasterError } from '../protocol/errors';
import { messageRoom } from '../protocol/limits';
import type { TaskInput, TaskRef } from '../protocol/schemas';
import { TaskReader, type BatchIndex } from './batch-index';
import { dependencyOrder } from './batch-split';
import { issuesOf, type AddedBatch, type AddOptions, type Feeder } from './feeder';

export async function addStreamed(
  feeder: Feeder,
  file: string,
  index: BatchIndex,
  batch: string,
  maxMessageBytes: number,
  opts: AddOptions,
): Promise<AddedBatch> {
  const ids = new Set(index.ids.filter((id): id is string => id !== undefined));
  const scope = (id: unknown) => (typeof id === 'string' && ids.has(id) ? `${batch}/${id}` : id);
  // What scoping adds to a task's bytes: the prefix on its id and on each of its file's dependencies.
  const extra = (i: number) =>
    (batch.length + 1) *
    ((index.ids[i] ? 1 : 0) + (index.dependencies[i]?.filter((d) => ids.has(d)).length ?? 0));
  const order = dependencyOrder(index.ids.map((id, i) => ({ id, dependencies: index.dependencies[i] })));
  // Half a message an add: the feeder splits an add that does not fit (JSON of a task can be longer
  // than its line), and the master's answer to each is quick.
  const room = Math.floor(messageRoom(maxMessageBytes) / 2);
  const reader = new TaskReader(file);
  const refs = new Array<TaskRef>(order.length);
  const warnings: string[] = [];
  let stored = 0;
  try {
    for (let at = 0; at < order.length;) {
      const chunk: number[] = [];
      for (let bytes = 0; at < order.length; at++) {
        const i = order[at];
        const size = index.lengths[i] + extra(i) + 1;
        if (chunk.length > 0 && bytes + size > room) break;
        chunk.push(i);
        bytes += size;
      }
      const tasks = chunk.map((i) => {
        const t = reader.read(index.offsets[i], index.lengths[i], index.lines[i]) as Record<string, unknown>;
        if (t && typeof t === 'object' && !Array.isArray(t)) {
          if (typeof t.id === 'string') t.id = scope(t.id);
          if (Array.isArray(t.dependencies)) t.dependencies = t.dependencies.map(scope);
        }
        return t as TaskInput;
      });
      let added: AddedBatch;
      try {
        added = await feeder.addBatch(tasks, { ...opts, batch });
      } catch (err) {
        if (!(err instanceof TaskmasterError)) throw err;
        throw inFileTerms(err, chunk, stored, batch);
      }
      chunk.forEach((i, k) => (refs[i] = added.tasks[k]));
      warnings.push(...(added.warnings ?? []));
      stored += chunk.length;
    }
  } finally {
    reader.close();
  }
  return { batch, tasks: refs, ...(warnings.length > 0 ? { warnings } : {}) };
}

/** The refusal of one add, its issues' `tasks[k]` turned into the file's `tasks[i]`. */
function inFileTerms(err: TaskmasterError, chunk: number[], stored: number, batch: string): TaskmasterError {
  const issues = issuesOf(err.details).map((i) => ({
    ...i,
    path: i.path.replace(/^tasks\[(\d+)\]/, (all, k: string) =>
      chunk[Number(k)] === undefined ? all : `tasks[${chunk[Number(k)]}]`,
    ),
  }));
  const details = {
    ...(err.details as Record<string, unknown> | undefined),
    ...(issues.length > 0 ? { issues } : {}),
    storedBefore: stored,
  };
  const note = stored > 0 ? ` (${stored} tasks of batch "${batch}" were already stored)` : '';
  return new TaskmasterError(err.code, `${err.message}${note}`, details);
}

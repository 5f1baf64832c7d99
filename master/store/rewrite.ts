/**
 * The database was dropped under a running master (its lease document vanished: master/lease.ts).
 * Memory is then all that is left of the work; this writes it back.
 *
 * Inputs: the live task records (every task not final) and the final outcomes memory remembers (the
 * scheduler's cache of recent ones). Output: `tasks` holding a document for each, and the indexes
 * and collections a start creates. A live task is written whole, at its current state; a remembered
 * outcome as a final document of what it says (its module and params are not in memory: `module`
 * is "?", `params` empty), so a feeder or the API asking for it finds it. Final tasks older than the
 * cache are gone with the database.
 *
 * Ordering: everything queued before is written first (barrier, folder settled), so the folder's
 * own inserts of new tasks are done; documents are inserted, and one the folder inserted meanwhile
 * (a duplicate `_id`) is left as it is, being newer. Each live task is then folded again, so a
 * change made while this ran reaches its document (the folder's `rev < new` keeps the newest).
 */
import type { Connection } from 'mongoose';
import type { Logger } from '../../common/logger';
import type { TaskOutcome } from '../../protocol/schemas';
import { encodeValue } from '../../models/codec';
import { ensureCollections } from '../../models/connection';
import type { TaskDoc } from '../../models/task';
import type { Store } from './store';
import { bornDoc } from './fold';
import { encodeError } from './recovery';
import { firstDocOf, type TaskRecord } from '../task-record';
import { classify, DUPLICATE_KEY } from './write-errors';
import { inChunks, IN_CHUNK } from './in-chunks';
import { RetryBackoff } from './retry-backoff';

export interface Rewritten {
  live: number;
  finals: number;
}

export async function rewriteFromMemory(
  conn: Connection,
  store: Store,
  memory: { tasks: ReadonlyMap<string, TaskRecord>; finals: ReadonlyMap<string, TaskOutcome> },
  logger: Logger,
): Promise<Rewritten> {
  await store.barrier();
  await store.folder.settled();
  await persist(() => ensureCollections(conn), logger);
  const now = Date.now();
  const docs: TaskDoc[] = [];
  const live = [...memory.tasks.values()];
  for (const t of live) {
    const prepared = store.prepareTasks([firstDocOf(t)]);
    // Its values were stored once already, so they encode; a task whose do not is left out, said.
    if ('error' in prepared) logger.error('a live task could not be written back', { taskId: t.id });
    else docs.push(bornDoc(prepared.docs[0], t, now));
  }
  let finals = 0;
  for (const [id, o] of memory.finals) {
    if (memory.tasks.has(id)) continue;
    const d = finalDoc(o, now);
    if (d) {
      docs.push(d);
      finals++;
    }
  }
  await inChunks(docs, IN_CHUNK, (chunk) =>
    persist(async () => {
      try {
        await store.tasks.insertMany(chunk as never[], { ordered: false });
      } catch (err) {
        const e = err as { writeErrors?: { code: number }[] | { code: number } };
        const errors = Array.isArray(e.writeErrors) ? e.writeErrors : e.writeErrors ? [e.writeErrors] : [];
        // Documents the folder wrote meanwhile are newer: left as they are.
        if (errors.length > 0 && errors.every((w) => w.code === DUPLICATE_KEY)) return;
        throw err;
      }
    }, logger),
  );
  for (const t of live) store.fold(t);
  return { live: docs.length - finals, finals };
}

/** A final document from an outcome alone, or null when its values cannot be stored. */
function finalDoc(o: TaskOutcome, now: number): TaskDoc | null {
  try {
    const d: TaskDoc = {
      _id: o.id,
      batch: o.batch ?? '',
      module: '?',
      params: [],
      state: o.state,
      attempts: o.attempts,
      maxAttempts: o.attempts,
      created: now,
      updated: now,
      rev: 0,
      assigned: { completed: now },
    };
    if (o.state === 'done') d.result = encodeValue(o.result ?? null);
    if (o.error) d.error = encodeError(o.error) as TaskDoc['error'];
    if (o.moduleHash) d.moduleHash = o.moduleHash;
    return d;
  } catch {
    return null;
  }
}

/** Runs `op` until it succeeds or fails for a reason retrying cannot cure. */
async function persist(op: () => Promise<unknown>, logger: Logger): Promise<void> {
  const backoff = new RetryBackoff();
  for (;;) {
    try {
      await op();
      return;
    } catch (err) {
      const f = classify(err);
      if (f.kind === 'refused') throw err;
      await backoff.wait((wait) =>
        logger.warn('writing memory back failed; retrying', { error: f.message, retryInMs: wait }),
      );
    }
  }
}

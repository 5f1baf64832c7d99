/**
 * The store's reads: what a starting master recovers from `tasks` and the journal, and the states of
 * tasks not in memory. Recovery, in order: commit records of multi-task adds left by earlier versions
 * of the store (`task_adds`) remove the tasks they list; tasks the journal holds as added but `tasks`
 * lacks are inserted with their latest journal state; then every task not final is read, with the
 * newest journal change of each, and journal documents with nothing newer than `tasks` are deleted;
 * with them, the final tasks whose dedup key is still taken (only their ids, states and keys: a task
 * final only in the journal is among the open ones, and the scheduler finishes it).
 * Look-ups are `_id` look-ups; a state the folder has yet to write wins over the stored one.
 */
import type { Collection } from 'mongoose';
import type { Logger } from '../../common/logger';
import { FINAL_STATES } from '../../protocol/states';
import { decodeValue, encodeValue } from '../../models/codec';
import type { TaskDoc } from '../../models/task';
import type { KeptTask, StoredState } from '../task-store';
import type { JournalChange, JournalDoc } from '../../models/task-journal';
import type { JournalFolder } from './fold';
import type { TaskRecord } from '../task-record';
import { classify } from './write-errors';
import { inChunks, IN_CHUNK } from './in-chunks';

/** What the reads need of the store. */
export interface ReadTarget {
  readonly tasks: Collection<TaskDoc>;
  readonly journal: Collection<JournalDoc>;
  readonly pendingAdds: Collection<{ _id: string; ids: string[]; at: number }>;
  readonly folder: JournalFolder;
  readonly logger: Logger;
  /** A journal document found on start, with how many of its changes `tasks` lacks. */
  keepJournal(id: string, live: number): void;
  deleteFoldedJournal(): Promise<void>;
}

export interface Recovered {
  docs: TaskDoc[];
  journal: Map<string, { change: JournalChange; refs: [string, number][] }>;
  dropped: number;
  kept: KeptTask[];
}

/**
 * What a starting master needs: every task not final in `tasks`, with the latest journal change
 * newer than its document. Adds that were never acknowledged are removed first; journal documents
 * with nothing newer than `tasks` are deleted.
 */
export async function loadForRecovery(s: ReadTarget): Promise<Recovered> {
  // Commit records of multi-task adds, written by earlier versions of the store (an add now lives
  // whole in one journal document): their tasks were never acknowledged.
  let dropped = 0;
  for (const m of await s.pendingAdds.find({}).toArray()) {
    await inChunks(m.ids, IN_CHUNK, async (chunk) => {
      dropped += (await s.tasks.deleteMany({ _id: { $in: chunk } })).deletedCount;
    });
    await s.pendingAdds.deleteOne({ _id: m._id });
  }
  const journalDocs = await s.journal.find({}).toArray();
  await insertUnborn(s, journalDocs);
  // One read for both (on FerretDB every query reads the whole collection): the tasks not final, and
  // the final ones whose dedup key is still taken, of which only the key and the state are kept.
  const found = (await s.tasks
    .find({ $or: [{ state: { $nin: [...FINAL_STATES] } }, { 'dedup.until': { $gt: Date.now() } }] })
    .toArray()) as TaskDoc[];
  const docs: TaskDoc[] = [];
  const kept: KeptTask[] = [];
  for (const d of found) {
    if (!FINAL_STATES.includes(d.state)) docs.push(decodeTask(d));
    else if (d.dedup) kept.push({ id: d._id, batch: d.batch, state: d.state, dedup: d.dedup });
  }
  const open = new Map(docs.map((d) => [d._id, d]));
  const journal = new Map<string, { change: JournalChange; refs: [string, number][] }>();
  for (const j of journalDocs) {
    let live = 0;
    for (const c of JSON.parse(j.changes) as JournalChange[]) {
      const d = open.get(c.id);
      if (!d || c.rev <= d.rev) continue; // already in `tasks`, or a task that is gone
      live++;
      const cur = journal.get(c.id);
      const change = c;
      if (!cur) journal.set(c.id, { change, refs: [[j._id, c.rev]] });
      else {
        if (c.rev > cur.change.rev) cur.change = change;
        cur.refs.push([j._id, c.rev]);
      }
    }
    s.keepJournal(j._id, live);
  }
  await s.deleteFoldedJournal();
  return { docs, journal, dropped, kept };
}

/**
 * Inserts the tasks the journal holds as added but `tasks` lacks (the master stopped before its
 * folder inserted them), each with its latest state in the journal.
 */
async function insertUnborn(s: ReadTarget, journalDocs: JournalDoc[]): Promise<void> {
  const added = new Map<string, TaskDoc>();
  for (const j of journalDocs)
    if (j.adds) for (const d of JSON.parse(j.adds) as TaskDoc[]) added.set(d._id, d);
  if (added.size === 0) return;
  const ids = [...added.keys()];
  await inChunks(ids, IN_CHUNK, async (chunk) => {
    const found = await s.tasks.find({ _id: { $in: chunk } }, { projection: { _id: 1 } }).toArray();
    for (const d of found) added.delete(d._id);
  });
  const latest = new Map<string, JournalChange>();
  for (const j of journalDocs)
    for (const c of JSON.parse(j.changes) as JournalChange[]) {
      const cur = latest.get(c.id);
      if (added.has(c.id) && (!cur || c.rev > cur.rev)) latest.set(c.id, c);
    }
  const docs = [...added.values()].map((d) => withChange(d, latest.get(d._id)));
  await inChunks(docs, IN_CHUNK, (chunk) =>
    s.tasks.insertMany(chunk as never[], { ordered: false }).catch((err: unknown) => {
      // Documents refused (a taken id cannot be, after the check above) are logged, not fatal.
      s.logger.error('recovery: a new task could not be inserted into tasks', {
        error: classify(err).message,
      });
    }),
  );
  s.logger.info('recovery: inserted tasks the journal held as added', { tasks: docs.length });
}

/** States of these tasks (final or not) as stored; unknown ids are absent. */
export async function fetchStates(s: ReadTarget, ids: string[]): Promise<Map<string, StoredState>> {
  const states = new Map<string, StoredState>();
  await inChunks(ids, IN_CHUNK, async (chunk) => {
    const docs = (await s.tasks
      .find({ _id: { $in: chunk } }, { projection: { params: 0 } })
      .toArray()) as TaskDoc[];
    for (const raw of docs) {
      const d = decodeTask(raw);
      states.set(d._id, {
        id: d._id,
        batch: d.batch,
        state: d.state,
        attempts: d.attempts ?? 0,
        rev: d.rev ?? 0,
        result: d.result,
        error: d.error ?? null,
        who: d.assigned?.who ?? null,
        moduleHash: d.moduleHash ?? null,
        ...(d.addKey ? { addKey: d.addKey } : {}),
      });
    }
  });
  // Tasks durable in the journal whose documents the folder has yet to insert.
  for (const id of ids) {
    const base = states.has(id) ? undefined : s.folder.unbornDoc(id);
    if (base)
      states.set(id, {
        id,
        batch: base.batch,
        state: base.state,
        attempts: 0,
        rev: 0,
        who: null,
        moduleHash: null,
        ...(base.addKey ? { addKey: base.addKey } : {}),
      });
  }
  // A state `tasks` does not show yet is newer than the document.
  for (const [id, stored] of states) {
    const t = s.folder.pendingRecord(id);
    if (t && t.rev > stored.rev)
      states.set(id, {
        ...stored,
        state: t.state,
        attempts: t.attempts,
        rev: t.rev,
        result: t.result,
        error: t.error,
      });
  }
  return states;
}

/** A stored document with a journal change applied (recovery of a task `tasks` did not have yet). */
function withChange(d: TaskDoc, c: JournalChange | undefined): TaskDoc {
  if (!c) return d;
  const out: TaskDoc = { ...d, state: c.state, rev: c.rev, attempts: c.attempts, updated: Date.now() };
  if (c.who || c.when || c.completed)
    out.assigned = { who: c.who ?? null, when: c.when ?? null, completed: c.completed ?? null };
  if (c.moduleHash) out.moduleHash = c.moduleHash;
  if (c.uncounted) out.uncounted = c.uncounted;
  if (c.retryAt && c.state === 'ready') out.retryAt = c.retryAt;
  try {
    if (c.state === 'done') out.result = encodeValue(c.result ?? null);
    if (c.error) out.error = encodeError(c.error as TaskRecord['error']) as TaskDoc['error'];
  } catch (err) {
    out.state = 'failed';
    out.result = null;
    out.error = { code: 'EPERSIST', message: String(err) };
  }
  return out;
}

export function decodeTask(d: TaskDoc): TaskDoc {
  return {
    ...d,
    params: (decodeValue(d.params) as unknown[]) ?? [],
    result: decodeValue(d.result),
    requires: d.requires ? (decodeValue(d.requires) as Record<string, unknown>) : d.requires,
    error: d.error ? { ...d.error, details: decodeValue(d.error.details) } : d.error,
  };
}

export function encodeError(e: TaskRecord['error']): unknown {
  if (!e || e.details === undefined) return e ?? null;
  return { ...e, details: encodeValue(e.details) };
}

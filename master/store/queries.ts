/**
 * Reads of `tasks` for the HTTP API and the operator's retry: task lists with filters and a cursor,
 * one task, a batch's counts and graph, the dependents a rerun brings back. Every query uses fields
 * the master writes on each change (state, batch, created, dependencies, error.code) and stays valid
 * on MongoDB 7 as on FerretDB. Memory is more current than these documents (running states are
 * written lazily), so callers overlay the scheduler's records on what comes back.
 */
import type { Collection, mongo } from 'mongoose';
import { TimeSlice } from '../../common/time-slice';
import type { TaskState } from '../../protocol/states';
import type { ViewState } from '../../protocol/views';
import type { TaskDoc } from '../../models/task';
import { decodeTask } from './recovery';
import { inChunks, IN_CHUNK } from './in-chunks';

export interface TaskFilter {
  /** `delayed`: waiting or ready with a `runAt` to come; `waiting` and `ready` then leave those out. */
  state?: ViewState;
  batch?: string;
  module?: string;
  runner?: string;
  /** Text in the id or the module name. */
  q?: string;
}

/** A position in a list ordered newest first: the last task returned. */
export interface Cursor {
  created: number;
  id: string;
}

export function encodeCursor(c: Cursor): string {
  return Buffer.from(JSON.stringify([c.created, c.id])).toString('base64url');
}

/** The cursor a list returned, or undefined when it is not one. */
export function decodeCursor(text: string): Cursor | undefined {
  try {
    const v = JSON.parse(Buffer.from(text, 'base64url').toString('utf8')) as unknown;
    if (Array.isArray(v) && typeof v[0] === 'number' && typeof v[1] === 'string')
      return { created: v[0], id: v[1] };
  } catch {
    // not ours
  }
  return undefined;
}

const LIST_PROJECTION = { params: 0, result: 0 };

/** Tasks matching `f`, newest first, after `cursor`; one more than `limit` tells whether more follow. */
export async function listTasks(
  tasks: Collection<TaskDoc>,
  f: TaskFilter,
  cursor: Cursor | undefined,
  limit: number,
): Promise<{ docs: TaskDoc[]; next: Cursor | null }> {
  const and: mongo.Filter<TaskDoc>[] = [];
  if (f.state) and.push(...stateFilter(f.state, Date.now()));
  if (f.batch) and.push({ batch: f.batch });
  if (f.module) and.push({ module: f.module });
  if (f.runner) and.push({ 'assigned.who': f.runner });
  if (f.q) {
    const re = { $regex: escapeRegExp(f.q), $options: 'i' };
    and.push({ $or: [{ _id: re }, { module: re }] } as mongo.Filter<TaskDoc>);
  }
  if (cursor)
    and.push({
      $or: [{ created: { $lt: cursor.created } }, { created: cursor.created, _id: { $lt: cursor.id } }],
    } as mongo.Filter<TaskDoc>);
  const docs = (await tasks
    .find(and.length > 0 ? { $and: and } : {}, { projection: LIST_PROJECTION })
    .sort({ created: -1, _id: -1 })
    .limit(limit + 1)
    .toArray()) as TaskDoc[];
  const more = docs.length > limit;
  const page = more ? docs.slice(0, limit) : docs;
  const last = page[page.length - 1];
  return { docs: page.map(decodeTask), next: more && last ? { created: last.created, id: last._id } : null };
}

/** The conditions of a state as views show it: `delayed` is derived from `runAt` (protocol/views.ts). */
function stateFilter(state: ViewState, now: number): mongo.Filter<TaskDoc>[] {
  if (state === 'delayed') return [{ state: { $in: ['waiting', 'ready'] } }, { runAt: { $gt: now } }];
  if (state !== 'waiting' && state !== 'ready') return [{ state }];
  return [
    { state },
    { $or: [{ runAt: { $exists: false } }, { runAt: { $lte: now } }] } as mongo.Filter<TaskDoc>,
  ];
}

/** Whole documents of these tasks (decoded); unknown ids are absent. */
export async function loadTasks(tasks: Collection<TaskDoc>, ids: string[]): Promise<Map<string, TaskDoc>> {
  const out = new Map<string, TaskDoc>();
  await inChunks(ids, IN_CHUNK, async (chunk) => {
    const docs = (await tasks.find({ _id: { $in: chunk } }).toArray()) as TaskDoc[];
    for (const d of docs) out.set(d._id, decodeTask(d));
  });
  return out;
}

/**
 * The stored failures, read in one pass: what a retry needs to find what it brings back. Only `_id`
 * look-ups use an index on FerretDB, so a query on `dependencies` or `batch` reads the whole
 * collection; one pass per retry (not one per thousand ids and per level of dependents) keeps a
 * retry linear in the collection. It holds ids, a few dozen bytes per failed task, and whole
 * documents only of the batch asked for: those a batch's retry runs again, which would otherwise be
 * read a second time by `_id`.
 */
export interface Failures {
  /** Each failed-through-a-dependency (EDEPFAILED) task, under each of its dependencies. */
  dependentsOf: Map<string, string[]>;
  /** The batch's failed and cancelled tasks that did not fail only because of a dependency. */
  batchRoots: string[];
  /** The batch's failed and cancelled tasks, decoded. */
  batchDocs: Map<string, TaskDoc>;
}

/** Documents read per round trip: bounds the time one reply takes to decode. */
const SCAN_BATCH = 500;

export async function readFailures(tasks: Collection<TaskDoc>, batch?: string): Promise<Failures> {
  const out: Failures = { dependentsOf: new Map(), batchRoots: [], batchDocs: new Map() };
  // Whole documents for a batch's retry (the server reads them whole anyway); ids otherwise.
  const projection = batch === undefined ? { _id: 1, state: 1, dependencies: 1, 'error.code': 1 } : {};
  const cursor = tasks.find(
    { state: { $in: ['failed', 'cancelled'] } },
    { projection, batchSize: SCAN_BATCH },
  );
  // A reply's documents are handed out without a turn of the event loop between them.
  const slice = new TimeSlice();
  for await (const d of cursor) {
    if (slice.due()) await slice.pause();
    const viaDependency = d.state === 'failed' && d.error?.code === 'EDEPFAILED';
    if (viaDependency)
      for (const dep of d.dependencies ?? []) {
        const list = out.dependentsOf.get(dep);
        if (list) list.push(d._id);
        else out.dependentsOf.set(dep, [d._id]);
      }
    if (batch === undefined || d.batch !== batch) continue;
    out.batchDocs.set(d._id, decodeTask(d));
    if (!viaDependency) out.batchRoots.push(d._id);
  }
  return out;
}

/**
 * Ids of the tasks that failed because one of `ids` did (EDEPFAILED), transitively. In time slices
 * (`slice`): tens of thousands of them would otherwise hold the event loop.
 */
export async function failedDependents(f: Failures, ids: string[], slice: TimeSlice): Promise<string[]> {
  const seen = new Set(ids);
  const found: string[] = [];
  const frontier = [...ids];
  while (frontier.length > 0) {
    if (slice.due()) await slice.pause();
    for (const d of f.dependentsOf.get(frontier.pop() as string) ?? []) {
      if (seen.has(d)) continue;
      seen.add(d);
      found.push(d);
      frontier.push(d);
    }
  }
  return found;
}

export interface StoredBatch {
  id: string;
  counts: Record<TaskState, number>;
  created: number;
  /** Latest completion among its final tasks. */
  completed: number | null;
}

/**
 * Batches as stored: the ones named, or the `limit` most recently active (the batches of the tasks
 * that changed last). Counts come from one aggregation whatever the number of batches: on FerretDB
 * every query but an `_id` look-up scans `tasks`, so a query per batch made a master's start or
 * takeover quadratic in the batches kept. A batch's first creation and last completion are read per
 * batch when batches are named (a batch's own page), and otherwise taken from the recently changed
 * tasks the batches were found by (FerretDB has no `$min` or `$max` accumulator): the last completion
 * is among them, and the creation is the earliest of theirs, which for a batch added at once is its
 * tasks' one creation time.
 */
export async function storedBatches(
  tasks: Collection<TaskDoc>,
  opts: { limit?: number; ids?: string[] },
): Promise<StoredBatch[]> {
  const times = new Map<string, { created: number; completed: number | null }>();
  let ids = opts.ids;
  if (!ids) {
    const recent = await tasks
      .find({}, { projection: { batch: 1, created: 1, 'assigned.completed': 1 } })
      .sort({ updated: -1 })
      .limit(20 * (opts.limit ?? 200))
      .toArray();
    for (const d of recent) {
      const t = times.get(d.batch);
      const completed = d.assigned?.completed || null;
      if (!t) times.set(d.batch, { created: d.created, completed });
      else {
        if (d.created < t.created) t.created = d.created;
        if (completed !== null && (t.completed === null || completed > t.completed)) t.completed = completed;
      }
    }
    ids = [...times.keys()].slice(0, opts.limit ?? 200);
  } else {
    for (const id of ids) {
      const [first] = await tasks
        .find({ batch: id }, { projection: { created: 1 } })
        .sort({ created: 1 })
        .limit(1)
        .toArray();
      const [last] = await tasks
        .find({ batch: id, 'assigned.completed': { $gt: 0 } }, { projection: { assigned: 1 } })
        .sort({ 'assigned.completed': -1 })
        .limit(1)
        .toArray();
      if (first) times.set(id, { created: first.created, completed: last?.assigned?.completed ?? null });
    }
  }
  if (ids.length === 0) return [];
  const rows = await tasks
    .aggregate<{ _id: { batch: string; state: TaskState }; n: number }>([
      { $match: { batch: { $in: ids } } },
      { $group: { _id: { batch: '$batch', state: '$state' }, n: { $sum: 1 } } },
    ])
    .toArray();
  const byId = new Map<string, StoredBatch>();
  for (const r of rows) {
    let b = byId.get(r._id.batch);
    if (!b) {
      const t = times.get(r._id.batch) ?? { created: 0, completed: null };
      byId.set(r._id.batch, (b = { id: r._id.batch, counts: emptyCounts(), ...t }));
    }
    b.counts[r._id.state] += r.n;
  }
  return [...byId.values()].sort((a, b) => b.created - a.created);
}

/** A batch's tasks for its graph: at most `limit` (and whether there were more). */
export async function batchNodes(
  tasks: Collection<TaskDoc>,
  batch: string,
  limit: number,
): Promise<{ docs: Pick<TaskDoc, '_id' | 'state' | 'module' | 'dependencies'>[]; truncated: boolean }> {
  const docs = (await tasks
    .find({ batch }, { projection: { _id: 1, state: 1, module: 1, dependencies: 1 } })
    .sort({ created: 1, _id: 1 })
    .limit(limit + 1)
    .toArray()) as TaskDoc[];
  return { docs: docs.slice(0, limit), truncated: docs.length > limit };
}

export function emptyCounts(): Record<TaskState, number> {
  return { waiting: 0, ready: 0, assigned: 0, running: 0, done: 0, failed: 0, cancelled: 0 };
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

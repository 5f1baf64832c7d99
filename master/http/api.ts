/**
 * The tasks and batches API (the dashboard's and the CLI's): lists with filters and a cursor, one
 * task with its timeline and why it is not running yet, retry ("rerun from failed"), cancel, batches
 * with their dependency graph, a batch's bulk retry, and the options in effect (`/api/config`,
 * secrets redacted). Inputs are parsed with zod; memory (the scheduler's records) is overlaid on what
 * `tasks` returns, since it is the more current of the two.
 */
import type { Collection } from 'mongoose';
import { z } from 'zod';
import { VIEW_STATES } from '../../protocol/views';
import type { TaskDoc } from '../../models/task';
import { HttpError, json, param, parse, type HttpRoutes, type HttpView } from './server';
import {
  docTimeline,
  docView,
  recordView,
  storedBatchView,
  type BatchView,
  type Monitor,
  type TaskView,
} from './monitor';
import {
  batchNodes,
  decodeCursor,
  encodeCursor,
  listTasks,
  loadTasks,
  storedBatches,
} from '../store/queries';
import type { RerunResult } from '../rerun';
import type { Reason } from '../scheduler/policies/reason';
import type { ScanGate } from './scan-gate';
import type { Scheduler } from '../scheduler/scheduler';
import { paramsOf, type TaskRecord } from '../task-record';

export interface ApiView extends HttpView {
  readonly monitor: Monitor;
  /** `tasks`, holding every acknowledged task. */
  readTasks(): Promise<Collection<TaskDoc>>;
  /** A task's record whose latest state `tasks` does not show yet (the store's folder), if any. */
  unfoldedRecord(id: string): TaskRecord | undefined;
  /** Bounds the reads of `tasks` that may scan (anything but `_id` look-ups). */
  readonly scans: ScanGate;
  /** Whether a batch name may be stored: a name never added is answered without a scan. */
  readonly batchNames: { mayExist(name: string): boolean };
  retry(ids: string[]): Promise<RerunResult>;
  retryBatch(batch: string): Promise<RerunResult>;
  /** The options in effect, every declared one, secrets redacted (master/options.ts). */
  config(): Record<string, unknown>;
  cancel(ids: string[] | undefined, batch: string | undefined, by?: string): Promise<string[]>;
}

/** Largest dependency graph sent whole; beyond it, the batch's counts summarise it. */
export const GRAPH_LIMIT = 500;

const text = z.string().min(1).max(200);
const listSchema = z
  .object({
    state: z.enum(VIEW_STATES).optional(),
    batch: text.optional(),
    module: text.optional(),
    runner: text.optional(),
    q: text.optional(),
    cursor: z.string().max(2000).optional(),
    limit: z.coerce.number().int().min(1).max(500).default(100),
  })
  .strict();

const whySchema = z.object({ runner: text.optional() }).strict();

export function apiRoutes<V extends ApiView>(routes: HttpRoutes<V>): HttpRoutes<V> {
  return routes
    .on('GET', '/api/config', ({ res, master }) => json(res, 200, { options: master.config() }), {
      standby: true,
    })
    .on('GET', '/api/tasks', async ({ res, query, master }) => {
      // An empty parameter (`state=`) means no filter, as a form sends it.
      const raw = Object.fromEntries([...query.entries()].filter(([, v]) => v !== ''));
      const q = parse(listSchema, raw);
      const cursor = q.cursor === undefined ? undefined : decodeCursor(q.cursor);
      if (q.cursor !== undefined && !cursor)
        throw new HttpError(400, 'EVALIDATION', 'cursor: not a cursor this API returned');
      // A batch never added has no tasks: no need to read them all to find that out.
      const page =
        q.batch !== undefined && !master.batchNames.mayExist(q.batch)
          ? { docs: [], next: null }
          : await master.scans.run('GET /api/tasks', async () =>
              listTasks(await master.readTasks(), q, cursor, q.limit),
            );
      json(res, 200, {
        tasks: page.docs.map((d) => overlay(master, d)),
        next: page.next ? encodeCursor(page.next) : null,
      });
    })
    .on('GET', '/api/tasks/:id', async ({ res, params, master }) => {
      const id = param(params.id);
      json(res, 200, { task: await taskDetail(master, id) });
    })
    .on('GET', '/api/tasks/:id/why', async ({ res, params, query, master }) => {
      const id = param(params.id);
      const { runner } = parse(whySchema, Object.fromEntries(query.entries()));
      const why = await explainTask(master, id, runner);
      json(res, 200, { task: id, ...(runner ? { runner } : {}), ...why });
    })
    .on('POST', '/api/tasks/:id/retry', async ({ res, params, master }) => {
      const id = param(params.id);
      const r = await master.retry([id]);
      const refused = r.refused.find((x) => x.id === id);
      if (refused)
        throw new HttpError(
          refused.error.code === 'ENOTFOUND' ? 404 : 409,
          refused.error.code,
          refused.error.message,
        );
      const t = master.scheduler.tasks.get(id);
      json(res, 200, { task: t ? recordView(t) : await storedView(master, id), retried: r.retried });
    })
    .on('POST', '/api/tasks/:id/cancel', async ({ res, params, master }) => {
      const id = param(params.id);
      if (!master.scheduler.tasks.has(id)) {
        const doc = (await loadTasks(await master.readTasks(), [id])).get(id);
        if (!doc) throw new HttpError(404, 'ENOTFOUND', `no task "${id}"`);
        throw new HttpError(409, 'ESTATE', `task "${id}" is ${doc.state} already`);
      }
      const cancelled = master.scheduler.cancel([id], undefined, 'an operator');
      await master.scheduler.flushed();
      json(res, 200, { cancelled });
    })
    .on('GET', '/api/batches', ({ res, master }) =>
      json(res, 200, { batches: master.monitor.recentBatches(200) }),
    )
    .on('GET', '/api/batches/:id', async ({ res, params, master }) => {
      const id = param(params.id);
      const batch = await findBatch(master, id);
      const { docs, truncated } = await master.scans.run(`batch "${id}"`, async () =>
        batchNodes(await master.readTasks(), id, GRAPH_LIMIT),
      );
      const ids = new Set(docs.map((d) => d._id));
      const nodes = docs.map((d) => ({
        id: d._id,
        state: stateOf(master.scheduler, d._id, d.state),
        module: d.module,
      }));
      const edges: [string, string][] = [];
      for (const d of docs)
        for (const dep of d.dependencies ?? []) if (ids.has(dep)) edges.push([dep, d._id]);
      json(res, 200, { batch, graph: { nodes, edges, truncated } });
    })
    .on('POST', '/api/batches/:id/retry-failed', async ({ res, params, master }) => {
      const id = param(params.id);
      const followed = master.monitor.batch(id) !== undefined;
      if (!followed && !master.batchNames.mayExist(id))
        throw new HttpError(404, 'ENOTFOUND', `no batch "${id}"`);
      const r = await master.scans.run(`batch "${id}"`, async () => {
        // Whether it exists, not its counts: on FerretDB each count reads the whole collection.
        if (
          !followed &&
          !(await (await master.readTasks()).findOne({ batch: id }, { projection: { _id: 1 } }))
        )
          throw new HttpError(404, 'ENOTFOUND', `no batch "${id}"`);
        return master.retryBatch(id);
      });
      json(res, 200, { retried: r.retried });
    })
    .on('POST', '/api/batches/:id/cancel', async ({ res, params, master }) => {
      const id = param(params.id);
      await findBatch(master, id);
      const cancelled = await master.cancel(undefined, id, 'an operator');
      await master.scheduler.flushed();
      json(res, 200, { cancelled });
    });
}

async function findBatch(master: ApiView, id: string): Promise<BatchView> {
  const known = master.monitor.batch(id);
  if (known) return known;
  if (!master.batchNames.mayExist(id)) throw new HttpError(404, 'ENOTFOUND', `no batch "${id}"`);
  // Not among the batches memory follows: a scan of `tasks` (an unknown name finds nothing, at full cost).
  const [stored] = await master.scans.run(`batch "${id}"`, async () =>
    storedBatches(await master.readTasks(), { ids: [id] }),
  );
  if (!stored) throw new HttpError(404, 'ENOTFOUND', `no batch "${id}"`);
  return storedBatchView(stored);
}

function stateOf(s: Scheduler, id: string, stored: TaskDoc['state']): TaskDoc['state'] {
  return s.tasks.get(id)?.state ?? s.finals.get(id)?.state ?? stored;
}

/** A listed document, with memory's state where memory knows the task. */
function overlay(master: ApiView, d: TaskDoc): TaskView {
  const s = master.scheduler;
  const live = s.tasks.get(d._id) ?? newerThan(master, d);
  if (live) return recordView(live);
  const v = docView(d);
  const fin = s.finals.get(d._id);
  if (fin && fin.state !== d.state) {
    v.state = fin.state;
    v.attempts = fin.attempts;
  }
  return v;
}

async function storedView(master: ApiView, id: string): Promise<TaskView> {
  const doc = (await loadTasks(await master.readTasks(), [id])).get(id);
  if (!doc) throw new HttpError(404, 'ENOTFOUND', `no task "${id}"`);
  return overlay(master, doc);
}

async function taskDetail(master: ApiView, id: string): Promise<Record<string, unknown>> {
  const s = master.scheduler;
  const live = s.tasks.get(id);
  const doc = live ? undefined : (await loadTasks(await master.readTasks(), [id])).get(id);
  if (!live && !doc) throw new HttpError(404, 'ENOTFOUND', `no task "${id}"`);
  const remembered = master.monitor.timeline(id);
  if (live) {
    return {
      ...recordView(live),
      params: paramsOf(live),
      ...(live.error ? { error: live.error } : {}),
      timeline:
        remembered.length > 0
          ? remembered
          : [{ at: live.created, state: live.state, attempt: live.attempts }],
      ...whyNot(s, live),
    };
  }
  const d = doc as TaskDoc;
  const v = overlay(master, d);
  // A final state in memory may still be on its way into the document (within a fraction of a second).
  const newer = newerThan(master, d);
  const fin = s.finals.get(id);
  const result = newer ? newer.result : fin && fin.state === 'done' ? fin.result : d.result;
  const error = newer ? newer.error : fin && fin.state !== 'done' ? fin.error : d.error;
  return {
    ...v,
    params: d.params,
    ...(v.state === 'done' ? { result } : {}),
    ...(error && v.state !== 'done' ? { error } : {}),
    timeline: remembered.length > 0 ? remembered : docTimeline(d),
  };
}

/**
 * The record of a task no longer live whose latest state is still on its way into its document (the
 * folder writes it within a fraction of a second): what the document will say, every field of it
 * (a retried task's attempts allowed, its result), where the outcome cache knows only the state.
 */
function newerThan(master: ApiView, d: TaskDoc): TaskRecord | undefined {
  const t = master.unfoldedRecord(d._id);
  return t && t.rev > (d.rev ?? 0) ? t : undefined;
}

/** Why a waiting or ready task is not running yet: the scheduler's first reason. */
function whyNot(s: Scheduler, t: TaskRecord): { why?: string; whyCode?: string } {
  if (t.state !== 'waiting' && t.state !== 'ready') return {};
  const r = s.explain(t.id);
  return { why: r.message, whyCode: r.code };
}

/** Why a task does not run (yet), or not on one runner; a task neither in memory nor stored is 404. */
async function explainTask(master: ApiView, id: string, runner: string | undefined): Promise<Reason> {
  const r = master.scheduler.explain(id, runner);
  if (r.code !== 'UNKNOWN_TASK') return r;
  const doc = (await loadTasks(await master.readTasks(), [id])).get(id);
  if (!doc) throw new HttpError(404, 'ENOTFOUND', `no task "${id}"`);
  return { code: 'FINAL', message: `task ${id} is ${doc.state}` };
}

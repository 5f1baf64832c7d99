/**
 * An operator's retry, "rerun from failed". Inputs: task ids (or a batch's failures). Output: the ids
 * that run again, and the named ones that cannot, with the reason.
 *
 * The named tasks run again, and with them every task that failed only because one of them did
 * (EDEPFAILED, transitively): those go back to waiting and run when their dependency succeeds.
 * The transition itself is the scheduler's (`revive`); this reads what it needs first. Documents are
 * read once every change is durable and folded into `tasks`, so each shows its latest change and its
 * `rev` is the one to continue.
 *
 * Cost: one pass over the stored failures (master/store/queries.ts `readFailures`), `_id` look-ups of the
 * tasks that run again, and the revival itself. Every step over the tasks (finding the dependents,
 * ordering them, reviving them) runs in time slices with the event loop free between them
 * (common/time-slice.ts), so a retry of tens of thousands of tasks does not stall the master's sockets.
 */
import { TimeSlice } from '../common/time-slice';
import { wireError, type WireError } from '../protocol/errors';
import type { TaskDoc } from '../models/task';
import { failedDependents, loadTasks, readFailures, type Failures } from './store/queries';
import type { Scheduler } from './scheduler/scheduler';
import type { Store } from './store/store';

export interface RerunResult {
  retried: string[];
  refused: { id: string; error: WireError }[];
}

export async function rerun(
  sched: Scheduler,
  store: Store,
  ids: string[],
  known?: Failures,
): Promise<RerunResult> {
  await store.barrier();
  await store.folder.settled();
  const failures = known ?? (await readFailures(store.tasks));
  const slice = new TimeSlice();
  const refused: RerunResult['refused'] = [];
  const stored = await loadKnown(
    store,
    failures,
    ids.filter((id) => !sched.tasks.has(id)),
    slice,
  );
  const roots: TaskDoc[] = [];
  for (const id of ids) {
    if (slice.due()) await slice.pause();
    const live = sched.tasks.get(id);
    const doc = stored.get(id);
    if (live)
      refused.push({
        id,
        error: wireError('ESTATE', `task "${id}" is ${live.state}, not failed or cancelled`),
      });
    else if (!doc) refused.push({ id, error: wireError('ENOTFOUND', `no task "${id}"`) });
    else roots.push(doc);
  }
  const runnable = roots.filter((d) => d.state === 'failed' || d.state === 'cancelled');
  const dependentIds = await failedDependents(
    failures,
    runnable.map((d) => d._id),
    slice,
  );
  const dependents = [...(await loadKnown(store, failures, dependentIds, slice)).values()].filter(
    (d) => d.state === 'failed' && d.error?.code === 'EDEPFAILED',
  );
  const ordered = await dependencyOrder([...roots, ...dependents], slice);
  const inSet = new Set(ordered.map((d) => d._id));
  const outside = new Set<string>();
  for (const d of ordered) {
    if (slice.due()) await slice.pause();
    for (const dep of d.dependencies ?? [])
      if (!inSet.has(dep) && !sched.tasks.has(dep) && !sched.finals.has(dep)) outside.add(dep);
  }
  const states = await store.fetchStates([...outside]);
  // In dependency order, slice by slice: a later slice finds its dependencies revived (or settled
  // meanwhile, which revive checks as it would for any dependency).
  const r: ReturnType<Scheduler['revive']> = { revived: [], refused: [] };
  await slice.pieces(ordered, (piece) => {
    const part = sched.revive(piece, states);
    for (const id of part.revived) r.revived.push(id);
    for (const x of part.refused) r.refused.push(x);
  });
  await store.barrier();
  // Only the named tasks' refusals are news; a dependent that stays failed has another failed dependency.
  const named = new Set(ids);
  refused.push(...r.refused.filter((x) => named.has(x.id)));
  return { retried: r.revived, refused };
}

/** A batch's failures (not those that failed only through a dependency), and their dependents. */
export async function rerunBatch(sched: Scheduler, store: Store, batch: string): Promise<RerunResult> {
  await store.barrier();
  await store.folder.settled();
  const failures = await readFailures(store.tasks, batch);
  return rerun(sched, store, failures.batchRoots, failures);
}

/**
 * Whole documents of these tasks: from the pass over the failures where it kept them, else read by
 * `_id`. Either is current: a stored final task changes only by a retry, which brings it into memory
 * first (and `revive` refuses a task in memory).
 */
async function loadKnown(
  store: Store,
  f: Failures,
  ids: string[],
  slice: TimeSlice,
): Promise<Map<string, TaskDoc>> {
  const out = new Map<string, TaskDoc>();
  const rest: string[] = [];
  for (const id of ids) {
    if (slice.due()) await slice.pause();
    const d = f.batchDocs.get(id);
    if (d) out.set(id, d);
    else rest.push(id);
  }
  for (const [id, d] of await loadTasks(store.tasks, rest)) out.set(id, d);
  return out;
}

/** Each task after the tasks of the set it depends on (Kahn's algorithm; adds cannot make cycles). */
async function dependencyOrder(docs: TaskDoc[], slice: TimeSlice): Promise<TaskDoc[]> {
  const byId = new Map(docs.map((d) => [d._id, d]));
  const waiting = new Map<string, number>();
  const dependents = new Map<string, string[]>();
  for (const d of byId.values()) {
    if (slice.due()) await slice.pause();
    let n = 0;
    for (const dep of d.dependencies ?? []) {
      if (!byId.has(dep)) continue;
      n++;
      const list = dependents.get(dep) ?? [];
      list.push(d._id);
      dependents.set(dep, list);
    }
    waiting.set(d._id, n);
  }
  const out: TaskDoc[] = [];
  const ready = [...byId.keys()].filter((id) => waiting.get(id) === 0);
  for (let i = 0; i < ready.length; i++) {
    if (slice.due()) await slice.pause();
    const id = ready[i];
    out.push(byId.get(id) as TaskDoc);
    for (const next of dependents.get(id) ?? []) {
      const left = (waiting.get(next) as number) - 1;
      waiting.set(next, left);
      if (left === 0) ready.push(next);
    }
  }
  return out;
}

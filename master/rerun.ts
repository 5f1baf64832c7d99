/**
 * An operator's retry, "rerun from failed". Inputs: task ids (or a batch's failures). Output: the ids
 * that run again, and the named ones that cannot, with the reason.
 *
 * The named tasks run again, and with them every task that failed only because one of them did
 * (EDEPFAILED, transitively): those go back to waiting and run when their dependency succeeds.
 * The transition itself is the scheduler's (`revive`); this reads what it needs first. Documents are
 * read once every change is durable and folded into `tasks`, so each shows its latest change and its
 * `rev` is the one to continue.
 */
import { wireError, type WireError } from '../protocol/errors';
import type { TaskDoc } from '../models/task';
import { batchFailures, failedDependents, loadTasks } from './queries';
import type { Scheduler } from './scheduler';
import type { Store } from './store';

export interface RerunResult {
  retried: string[];
  refused: { id: string; error: WireError }[];
}

export async function rerun(sched: Scheduler, store: Store, ids: string[]): Promise<RerunResult> {
  await store.barrier();
  await store.folder.settled();
  const refused: RerunResult['refused'] = [];
  const stored = await loadTasks(
    store.tasks,
    ids.filter((id) => !sched.tasks.has(id)),
  );
  const roots: TaskDoc[] = [];
  for (const id of ids) {
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
  const dependents = await failedDependents(
    store.tasks,
    runnable.map((d) => d._id),
  );
  const ordered = dependencyOrder([...roots, ...dependents]);
  const inSet = new Set(ordered.map((d) => d._id));
  const outside = new Set<string>();
  for (const d of ordered)
    for (const dep of d.dependencies ?? [])
      if (!inSet.has(dep) && !sched.tasks.has(dep) && !sched.finals.has(dep)) outside.add(dep);
  const states = await store.fetchStates([...outside]);
  const r = sched.revive(ordered, states);
  await store.barrier();
  // Only the named tasks' refusals are news; a dependent that stays failed has another failed dependency.
  const named = new Set(ids);
  refused.push(...r.refused.filter((x) => named.has(x.id)));
  return { retried: r.revived, refused };
}

/** A batch's failures (not those that failed only through a dependency), and their dependents. */
export async function rerunBatch(sched: Scheduler, store: Store, batch: string): Promise<RerunResult> {
  await store.barrier();
  return rerun(sched, store, await batchFailures(store.tasks, batch));
}

/** Each task after the tasks of the set it depends on (Kahn's algorithm; adds cannot make cycles). */
function dependencyOrder(docs: TaskDoc[]): TaskDoc[] {
  const byId = new Map(docs.map((d) => [d._id, d]));
  const waiting = new Map<string, number>();
  const dependents = new Map<string, string[]>();
  for (const d of byId.values()) {
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

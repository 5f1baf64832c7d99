/**
 * Tasks added straight through a Store (the tests of master/store/): a new task's document, and an
 * add that resolves once it is durable in the journal.
 */
import type { Store } from '../../master/store/store';
import type { TaskDoc } from '../../models/task';

/** A new task's document as an add writes it: module `ok`, batch `b`, three attempts. */
export function newTaskDoc(id: string, fields: Partial<TaskDoc> = {}): TaskDoc {
  const created = Date.now();
  return {
    _id: id,
    batch: 'b',
    module: 'ok',
    params: [],
    state: 'ready',
    attempts: 0,
    maxAttempts: 3,
    rev: 0,
    created,
    updated: created,
    ...fields,
  };
}

/** Adds the task through the store; resolves with its document once durable (in the journal). */
export async function addThrough(store: Store, doc: TaskDoc): Promise<TaskDoc> {
  const prepared = store.prepareTasks([doc]);
  if (!('docs' in prepared)) throw new Error(prepared.error.message);
  const stored = await store.insertTasks(prepared.docs);
  if (!stored.ok) throw new Error(`the add was refused: ${JSON.stringify(stored)}`);
  return prepared.docs[0];
}

/**
 * Recovery: records rebuilt from what the store holds after a start. A task's document is the base;
 * a journal change newer than it (a higher `rev`) overrides its state, attempt, runner, times and
 * result. What happens to the records next — orphans waiting for their runner, dependencies linked,
 * timeouts tracked — is the scheduler's `recover`.
 */
import type { JournalChange } from '../../../models/task-journal';
import type { TaskDoc } from '../../../models/task';
import { newTaskRecord, type TaskRecord } from '../../task-record';

/** A task record from its stored document (recovery, and an operator's retry). */
export function recordFromDoc(d: TaskDoc, maxAttempts: number): TaskRecord {
  return newTaskRecord({
    id: d._id,
    module: d.module,
    params: d.params,
    priority: d.priority,
    dependencies: d.dependencies,
    batch: d.batch,
    addKey: d.addKey,
    created: d.created,
    state: d.state,
    attempts: d.attempts,
    maxAttempts: d.maxAttempts ?? maxAttempts,
    uncounted: d.uncounted,
    rev: d.rev,
    who: d.assigned?.who,
    assignedAt: d.assigned?.when,
    result: d.result,
    error: d.error as TaskRecord['error'],
    moduleHash: d.moduleHash,
    runTimeout: d.runTimeout,
    timeout: d.timeout,
    assignTimeout: d.assignTimeout,
    deadline: d.deadline,
    key: d.key,
    affinity: d.affinity,
    group: d.group,
    backfilled: d.backfilled,
    backoff: d.backoff,
    requires: d.requires as TaskRecord['requires'],
    runner: d.runner,
    broadcast: d.broadcast,
    dedup: d.dedup,
    runAt: d.runAt,
    // Written with each change to ready (master/store/fold.ts): another state's is left over.
    retryAt: d.state === 'ready' ? d.retryAt : null,
  });
}

/** The journal holds a newer state than the document: the record takes it. */
export function applyJournal(t: TaskRecord, c: JournalChange): void {
  t.rev = c.rev;
  t.state = c.state;
  t.attempts = c.attempts;
  t.who = c.who ?? null;
  t.assignedAt = c.when ?? null;
  t.finishedAt = c.completed ?? null;
  t.result = c.result;
  t.error = (c.error as TaskRecord['error']) ?? null;
  t.moduleHash = c.moduleHash ?? t.moduleHash ?? null;
  t.uncounted = c.uncounted ?? t.uncounted;
  t.retryAt = c.state === 'ready' ? (c.retryAt ?? null) : null;
}

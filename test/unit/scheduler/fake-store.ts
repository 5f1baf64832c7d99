/**
 * An in-memory TaskStore (master/task-store.ts) for the scheduler's unit tests: it keeps each task's
 * latest recorded document and every record in order, so a test can assert what the store was asked
 * to write. Writes are durable at once; `refuse(id)` makes the next `update` of that task fail as the
 * database would (EPERSIST). Not a mock of the database: a second implementation of our interface.
 */
import { wireError, type WireError } from '../../../protocol/errors';
import type { TaskState } from '../../../protocol/states';
import type { AllocationDoc } from '../../../models/allocation';
import type { JournalChange } from '../../../models/task-journal';
import type { TaskDoc } from '../../../models/task';
import type { TaskRecord } from '../../../master/task-record';
import type { AddWriteResult, RefusalListener, StoredState, TaskStore } from '../../../master/task-store';

export interface Recorded {
  id: string;
  state: TaskState;
  rev: number;
  attempts: number;
  how: 'update' | 'fold';
  /** A ready task's retry backoff, as the change carries it. */
  retryAt?: number;
}

export class FakeTaskStore implements TaskStore {
  onRefused: RefusalListener = () => {};
  readonly folder = { congested: false, onRelieved: () => {} };
  readonly docs = new Map<string, TaskDoc>();
  readonly records: Recorded[] = [];
  readonly allocations = new Map<string, string>();
  journal = new Map<string, { change: JournalChange; refs: [string, number][] }>();
  private readonly refusing = new Set<string>();

  prepareTasks(docs: TaskDoc[]): { docs: TaskDoc[] } {
    return { docs };
  }

  async insertTasks(docs: TaskDoc[]): Promise<AddWriteResult> {
    const taken = docs.find((d) => this.docs.has(d._id));
    if (taken)
      return { ok: false, id: taken._id, error: wireError('EVALIDATION', `id "${taken._id}" taken`) };
    for (const d of docs) this.docs.set(d._id, { ...d });
    return { ok: true };
  }

  update(t: TaskRecord): WireError | null {
    if (this.refusing.delete(t.id)) return wireError('EPERSIST', `task "${t.id}": cannot be stored`);
    this.write(t, 'update');
    return null;
  }

  fold(t: TaskRecord): void {
    this.write(t, 'fold');
  }

  forget(t: TaskRecord): void {
    this.docs.delete(t.id);
  }

  barrier(): Promise<void> {
    return Promise.resolve();
  }

  allocate(doc: AllocationDoc): void {
    this.allocations.set(doc.key, doc.runner);
  }

  deallocate(key: string): void {
    this.allocations.delete(key);
  }

  async loadAllocations(): Promise<AllocationDoc[]> {
    return [...this.allocations].map(([key, runner]) => ({ key, runner, at: 0 }));
  }

  async loadForRecovery() {
    const docs = [...this.docs.values()].filter(
      (d) => d.state !== 'done' && d.state !== 'failed' && d.state !== 'cancelled',
    );
    return { docs: docs.map((d) => ({ ...d })), journal: this.journal, dropped: 0 };
  }

  adoptJournal(): void {}

  async fetchStates(ids: string[]): Promise<Map<string, StoredState>> {
    const out = new Map<string, StoredState>();
    for (const id of ids) {
      const d = this.docs.get(id);
      if (d)
        out.set(id, {
          id,
          batch: d.batch,
          state: d.state,
          attempts: d.attempts,
          rev: d.rev,
          result: d.result,
          error: d.error ?? null,
        });
    }
    return out;
  }

  /** The next `update` of this task is refused. */
  refuse(id: string): void {
    this.refusing.add(id);
  }

  /** States recorded for one task, in order. */
  statesOf(id: string): TaskState[] {
    return this.records.filter((r) => r.id === id).map((r) => r.state);
  }

  private write(t: TaskRecord, how: 'update' | 'fold'): void {
    const retryAt = t.state === 'ready' && t.retryAt ? { retryAt: t.retryAt } : {};
    this.records.push({ id: t.id, state: t.state, rev: t.rev, attempts: t.attempts, how, ...retryAt });
    const d = this.docs.get(t.id);
    if (!d) return;
    d.state = t.state;
    d.rev = t.rev;
    d.attempts = t.attempts;
    d.assigned = { who: t.who, when: t.assignedAt, completed: t.finishedAt ?? null };
    if (t.state === 'done') d.result = t.result;
    d.error = t.error ?? null;
    if (t.uncounted) d.uncounted = t.uncounted;
    if (t.state === 'ready') d.retryAt = t.retryAt ?? null;
  }
}

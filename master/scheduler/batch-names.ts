/**
 * The names of the batches `tasks` may hold, so that a batch nobody added is answered "no such
 * batch" from memory: on FerretDB looking a batch up by name reads every stored task, and a client
 * looping over made-up names would otherwise cost a scan each (master/http/scan-gate.ts bounds those that
 * remain). Read once at start (one `distinct`), then every add's. Names are never removed (retention,
 * purge): a name kept after its tasks are gone costs only the scan it would have cost anyway.
 * Bounded: beyond `limit` names (feeders that name no batch get a new one per add) the set stops
 * answering and every unknown name is looked up, as before.
 */
import type { Collection } from 'mongoose';
import type { TaskDoc } from '../../models/task';
import type { TaskObserver } from './core';
import type { TaskRecord } from '../task-record';

export class BatchNames implements TaskObserver {
  private names: Set<string> | null = new Set();

  constructor(private readonly limit = 100_000) {}

  async load(tasks: Collection<TaskDoc>): Promise<void> {
    for (const name of await tasks.distinct('batch')) this.note(name);
  }

  /** False only when no task was ever stored under this name (as far as the set can tell). */
  mayExist(name: string): boolean {
    return this.names === null || this.names.has(name);
  }

  added(tasks: readonly TaskRecord[]): void {
    for (const t of tasks) this.note(t.batch);
  }

  changed(): void {}

  discarded(): void {}

  private note(name: string): void {
    if (this.names === null) return;
    this.names.add(name);
    if (this.names.size > this.limit) this.names = null;
  }
}

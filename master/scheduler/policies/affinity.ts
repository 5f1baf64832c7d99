/**
 * Affinity: tasks with the same `affinity` key run on the runner the key is allocated to. A key is
 * allocated when its first task is distributed, among the placeable runners that may run the task
 * (sorted ids), by the allocator (default `hashAllocate`, atributo's). It stays with that runner while
 * the runner is drained or away — its tasks wait — until it is deallocated (API: DELETE
 * /api/allocations/KEY). Allocations are written to `allocations` and loaded on start.
 */
import { createHash } from 'node:crypto';
import type { AllocationDoc } from '../../../models/allocation';
import type { RunnerEntry } from '../runner-registry';
import type { TaskRecord } from '../../task-record';
import { eligible, placeable } from './eligibility';
import { reason, type Reason } from './reason';

export type Allocator = (key: string, runnerIds: string[]) => string | undefined;

/** What affinity writes: the store's allocation methods. */
export interface AllocationWriter {
  allocate(doc: AllocationDoc): void;
  deallocate(key: string): void;
}

/** atributo's default: the key's hash, as a 32-bit integer, indexes the available runners. */
export function hashAllocate(key: string, runnerIds: string[]): string | undefined {
  if (runnerIds.length === 0) return undefined;
  const n = createHash('sha256').update(key).digest().readUInt32BE(0);
  return runnerIds[n % runnerIds.length];
}

/** The runners a key may be allocated among (the RunnerRegistry). */
export interface RunnerSet {
  values(): Iterable<RunnerEntry>;
}

export class Affinity {
  /** Sticky allocations: affinity key → runner id. */
  readonly allocations = new Map<string, string>();

  constructor(
    private readonly writer: AllocationWriter,
    private readonly allocator: Allocator = hashAllocate,
  ) {}

  load(docs: { key: string; runner: string }[]): void {
    for (const a of docs) this.allocations.set(a.key, a.runner);
  }

  /**
   * The runner id `t`'s key belongs to, allocating it now if it has none; null when no runner can
   * take the key now.
   */
  runnerFor(t: TaskRecord, runners: RunnerSet): string | null {
    const key = t.affinity as string;
    const known = this.allocations.get(key);
    if (known) return known;
    const chosen = this.choose(t, runners);
    if (!chosen) return null;
    this.allocations.set(key, chosen);
    this.writer.allocate({ key, runner: chosen, at: Date.now() });
    return chosen;
  }

  /** Forgets a key's runner; its next task is allocated afresh. */
  deallocate(key: string): boolean {
    if (!this.allocations.delete(key)) return false;
    this.writer.deallocate(key);
    return true;
  }

  allocationsOf(runnerId?: string): { key: string; runner: string }[] {
    const out: { key: string; runner: string }[] = [];
    for (const [key, runner] of this.allocations)
      if (!runnerId || runner === runnerId) out.push({ key, runner });
    return out;
  }

  /** Why `t` cannot go to `r` because of its key; null if the key allows it (or it has none). */
  explain(t: TaskRecord, r: RunnerEntry, runners: RunnerSet): Reason | null {
    if (!t.affinity) return null;
    const owner = this.allocations.get(t.affinity) ?? this.choose(t, runners);
    if (owner === r.id) return null;
    if (!owner)
      return reason('AFFINITY', `affinity key "${t.affinity}" has no runner: none can take a new key now`);
    const held = this.allocations.has(t.affinity) ? 'held by' : 'would go to';
    return reason('AFFINITY', `affinity key "${t.affinity}" ${held} runner ${owner}`);
  }

  private choose(t: TaskRecord, runners: RunnerSet): string | undefined {
    const ids: string[] = [];
    for (const r of runners.values()) if (placeable(r) && eligible(r, t)) ids.push(r.id);
    if (ids.length === 0) return undefined;
    ids.sort();
    const chosen = this.allocator(t.affinity as string, ids);
    return chosen && ids.includes(chosen) ? chosen : undefined;
  }
}

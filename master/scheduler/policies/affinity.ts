/**
 * Affinity: tasks with the same `affinity` key run on the runner the key is allocated to. A key is
 * allocated when its first task is distributed, among the placeable runners that may run the task
 * (sorted ids), by the allocator (default `hashAllocate`, atributo's). It stays with that runner while
 * the runner is drained or away — its tasks wait — until it is deallocated (API: DELETE
 * /api/allocations/KEY). Allocations are written to `allocations` and loaded on start.
 *
 * The `affinity` policy (AFFINITY) allocates a task's key once per pass (`prepare`), then lets only
 * the key's runner take it; the key's runner coming back, or a deallocation, starts a pass.
 */
import { createHash } from 'node:crypto';
import type { AllocationDoc } from '../../../models/allocation';
import type { RunnerPolicy } from '../policy';
import type { Allocator } from '../scheduler-options';
import type { TaskRecord } from '../../task-record';
import { eligible, placeable, type RunnerSet } from './eligibility';

export type { Allocator };

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

export type { RunnerSet };

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

  /** The runner id `t`'s key belongs to, or would be allocated to now; allocates nothing. */
  ownerOf(t: TaskRecord, runners: RunnerSet): string | undefined {
    return this.allocations.get(t.affinity as string) ?? this.choose(t, runners);
  }

  holds(key: string): boolean {
    return this.allocations.has(key);
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

export const affinity: RunnerPolicy = {
  name: 'affinity',
  scope: 'runner',
  prepare(ctx, t) {
    if (t.affinity) ctx.affinity.runnerFor(t, ctx.runners);
  },
  check: (ctx, t, r) => (!t.affinity || ctx.affinity.ownerOf(t, ctx.runners) === r.id ? null : 'AFFINITY'),
  describe(ctx, _code, t) {
    const key = t.affinity as string;
    const owner = ctx.affinity.ownerOf(t, ctx.runners);
    if (!owner) return `affinity key "${key}" has no runner: none can take a new key now`;
    return `affinity key "${key}" ${ctx.affinity.holds(key) ? 'held by' : 'would go to'} runner ${owner}`;
  },
};

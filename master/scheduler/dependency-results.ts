/**
 * The results of a task's dependencies, as its assignment carries them (the task reads them as
 * `this.dependencies`, after BullMQ's `getChildrenValues`). Bounded: at most `maxBytes` of results as
 * JSON per task, taken in the order the task names its dependencies; a result that does not fit in
 * what is left is left out, with its size, so the task gets a clear ETOOLARGE naming the setting when
 * it reads it — never a silent gap. A dependency named twice is carried once.
 *
 * Results come from the outcomes in memory; those memory lacks (evicted, or final before a restart)
 * are read from the store in one look-up per flush, after the barrier and before the assignments go
 * out. Messages to a runner are split so that none carries more than `maxBytes` of results.
 */
import type { Logger } from '../../common/logger';
import type { Assignment, DependencyResult, TaskOutcome } from '../../protocol/schemas';
import type { StoredState } from '../task-store';

/** The master's `maxDependencyBytes` unless set: well under its default message limit of 1 MB. */
export const DEFAULT_MAX_DEPENDENCY_BYTES = 256 * 1024;

/** A done dependency's result and its size as JSON; undefined when it cannot be found. */
export type ResultLookup = (id: string) => { result: unknown; bytes: number } | undefined;

export interface PackedResults {
  dependencies: DependencyResult[];
  /** Bytes of the results carried. */
  bytes: number;
  /** Some result was left out. */
  leftOut: boolean;
}

export function packResults(ids: readonly string[], lookup: ResultLookup, maxBytes: number): PackedResults {
  const dependencies: DependencyResult[] = [];
  const seen = new Set<string>();
  let bytes = 0;
  let leftOut = false;
  for (const id of ids) {
    if (seen.has(id)) continue;
    seen.add(id);
    const found = lookup(id);
    if (!found) {
      dependencies.push({ id, leftOut: 0 });
      leftOut = true;
    } else if (bytes + found.bytes > maxBytes) {
      dependencies.push({ id, leftOut: found.bytes });
      leftOut = true;
    } else {
      dependencies.push({ id, result: found.result });
      bytes += found.bytes;
    }
  }
  return { dependencies, bytes, leftOut };
}

/** The size of a result as JSON, in bytes (a result is JSON: it came over the wire). */
export function jsonBytes(v: unknown): number {
  return Buffer.byteLength(JSON.stringify(v) ?? 'null');
}

export class DependencyResults {
  /** Assignments waiting for results memory lacks, with the dependencies they name. */
  private readonly toRead = new Map<Assignment, readonly string[]>();
  /** Bytes of results each assignment carries. */
  private readonly carried = new WeakMap<Assignment, number>();
  /** Sizes of final results, measured once however many dependents read them. */
  private readonly sizes = new WeakMap<TaskOutcome, number>();

  constructor(
    private readonly finals: ReadonlyMap<string, TaskOutcome>,
    private readonly store: { fetchStates(ids: string[]): Promise<Map<string, StoredState>> },
    private readonly maxBytes: number,
    private readonly logger: Logger,
  ) {}

  /** Gives `a` the results of `dependencies` from memory, or leaves it for `read` if memory lacks some. */
  attach(a: Assignment, dependencies: readonly string[]): void {
    if (dependencies.every((id) => this.finals.get(id)?.state === 'done'))
      this.pack(a, dependencies, this.inMemory);
    else this.toRead.set(a, dependencies);
  }

  /** Reads from the store what memory lacks for these assignments, in one look-up, and attaches it. */
  async read(assignments: Iterable<Assignment[]>): Promise<void> {
    if (this.toRead.size === 0) return;
    const waiting: [Assignment, readonly string[]][] = [];
    for (const list of assignments)
      for (const a of list) {
        const ids = this.toRead.get(a);
        if (ids) waiting.push([a, ids]);
        this.toRead.delete(a);
      }
    const lacking = new Set(waiting.flatMap(([, ids]) => ids.filter((id) => !this.inMemory(id))));
    let stored = new Map<string, StoredState>();
    try {
      if (lacking.size > 0) stored = await this.store.fetchStates([...lacking]);
    } catch (err) {
      // Left out as not found (the task is told), rather than holding the assignments back.
      this.logger.error("dependencies' results could not be read", { error: String(err) });
    }
    const lookup: ResultLookup = (id) => {
      const mem = this.inMemory(id);
      const s = mem ? undefined : stored.get(id);
      if (s?.state !== 'done') return mem;
      const result = s.result ?? null;
      return { result, bytes: jsonBytes(result) };
    };
    for (const [a, ids] of waiting) this.pack(a, ids, lookup);
  }

  /** A runner's assignments in messages that each carry at most `maxBytes` of results (one's own never exceed it). */
  *bySize(list: Assignment[]): Generator<Assignment[]> {
    let part: Assignment[] = [];
    let bytes = 0;
    for (const a of list) {
      const b = this.carried.get(a) ?? 0;
      if (part.length > 0 && bytes + b > this.maxBytes) {
        yield part;
        [part, bytes] = [[], 0];
      }
      part.push(a);
      bytes += b;
    }
    if (part.length > 0) yield part;
  }

  private readonly inMemory: ResultLookup = (id) => {
    const o = this.finals.get(id);
    if (o?.state !== 'done') return undefined;
    const result = o.result ?? null;
    let bytes = this.sizes.get(o);
    if (bytes === undefined) this.sizes.set(o, (bytes = jsonBytes(result)));
    return { result, bytes };
  };

  private pack(a: Assignment, ids: readonly string[], lookup: ResultLookup): void {
    const packed = packResults(ids, lookup, this.maxBytes);
    a.dependencies = packed.dependencies;
    if (packed.leftOut) a.maxDependencyBytes = this.maxBytes;
    this.carried.set(a, packed.bytes);
  }
}

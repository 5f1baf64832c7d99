/**
 * The results of a task's dependencies, as its assignment carries them (the task reads them as
 * `this.dependencies`, after BullMQ's `getChildrenValues`). Bounded: at most `maxBytes` of results as
 * JSON per task, taken in the order the task names its dependencies; a result that does not fit in
 * what is left is left out, with its size, so the task gets a clear ETOOLARGE naming the setting when
 * it reads it — never a silent gap. A dependency named twice is carried once.
 */
import type { DependencyResult } from '../protocol/schemas';

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

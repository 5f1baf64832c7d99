/**
 * Broadcast: a task added with `broadcast` becomes one copy per placeable runner that may run it
 * (master/scheduler/policies/eligibility.ts: one that has its module and matches its `requires`),
 * each pinned to its runner (`<id>@<runner id>`), and the task itself (still `broadcast`) waits for
 * its copies: it is done when every copy is final, its result one outcome per runner. With no such
 * runner, the add fails it with EATO.
 */
import { newId } from '../../../common/ids';
import type { ParsedTaskInput } from '../../../protocol/schemas';
import type { RunnerSet } from './affinity';
import { eligible, placeable } from './eligibility';

export type ExpandedInput = ParsedTaskInput & { presetId?: string; copy?: boolean };

/** The inputs of an add with each broadcast expanded into its copies, then itself. */
export function expandBroadcasts(parsed: ParsedTaskInput[], runners: RunnerSet): ExpandedInput[] {
  if (!parsed.some((p) => p.broadcast)) return parsed;
  const out: ExpandedInput[] = [];
  for (const p of parsed) {
    if (!p.broadcast) {
      out.push(p);
      continue;
    }
    const presetId = newId();
    const id = p.id ?? presetId;
    const copies: ExpandedInput[] = [];
    for (const r of runners.values())
      if (placeable(r) && eligible(r, { module: p.module, requires: p.requires ?? null }))
        copies.push({ ...p, id: `${id}@${r.id}`, runner: r.id, broadcast: false, copy: true });
    out.push(...copies);
    out.push({ ...p, id, presetId, dependencies: copies.map((c) => c.id as string) });
  }
  return out;
}

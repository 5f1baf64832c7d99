/**
 * Slot guarantees per priority range, after proletariat's `prioritySlots` and SACRED_GUARANTEES.
 *
 * A runner with `slots` S and `prioritySlots` {t1: g1, t2: g2, …} (thresholds t1 < t2 < …) splits
 * priorities into ranges [−∞, t1), [t1, t2), …, [tn, ∞). Each range above the lowest is guaranteed
 * its g: lower ranges may never take it. With S = 100 and {1: 30, 2: 20}: priorities below 1 may hold
 * at most 50 slots, below 2 at most 80, and 2 or more all 100.
 *
 * Higher ranges may still take what is guaranteed to a lower-but-not-lowest range. With `sacred`,
 * they may only take slots from the lowest range: the top range then holds at most 100 − 30 = 70.
 */
export interface SlotPlan {
  slots: number;
  /** Lower bounds of the ranges above the lowest, ascending. */
  thresholds: number[];
  /** Cumulative cap: tasks in ranges 0..m together may hold at most cumulative[m] slots. */
  cumulative: number[];
  /** With sacred guarantees: tasks in range m alone may hold at most own[m]. */
  own: number[] | null;
}

export function planSlots(
  slots: number,
  prioritySlots: Record<string, number> | undefined,
  sacred: boolean,
): SlotPlan {
  const pairs = Object.entries(prioritySlots ?? {})
    .map(([t, g]) => [Number(t), g] as const)
    .filter(([t, g]) => Number.isFinite(t) && g > 0)
    .sort((a, b) => a[0] - b[0]);
  // Keys at or below 0 name the lowest range (proletariat's default is { 0: slots }): it has no
  // guarantee of its own beyond what the others leave.
  const above = pairs.filter(([t]) => t > 0);
  const thresholds = above.map(([t]) => t);
  const g = [0, ...above.map(([, v]) => v)]; // g[m]: guarantee of range m (range 0 has none)
  const ranges = g.length;
  const cumulative: number[] = [];
  for (let m = 0; m < ranges; m++) {
    let reserved = 0;
    for (let j = m + 1; j < ranges; j++) reserved += g[j];
    cumulative.push(Math.max(0, slots - reserved));
  }
  let own: number[] | null = null;
  if (sacred) {
    own = [];
    for (let m = 0; m < ranges; m++) {
      let reserved = 0;
      for (let j = 1; j < ranges; j++) if (j !== m) reserved += g[j];
      own.push(Math.max(0, slots - reserved));
    }
  }
  return { slots, thresholds, cumulative, own };
}

export function rangeOf(plan: SlotPlan, priority: number): number {
  let m = 0;
  while (m < plan.thresholds.length && priority >= plan.thresholds[m]) m++;
  return m;
}

/** Whether one more task of range `k` fits, given the tasks per range already held. */
export function fits(plan: SlotPlan, held: number[], k: number): boolean {
  let total = 0;
  for (const h of held) total += h;
  if (total + 1 > plan.slots) return false;
  let cum = 0;
  for (let m = 0; m < plan.cumulative.length; m++) {
    cum += held[m] ?? 0;
    if (m >= k && cum + 1 > plan.cumulative[m]) return false;
  }
  if (plan.own && (held[k] ?? 0) + 1 > plan.own[k]) return false;
  return true;
}

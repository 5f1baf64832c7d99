/**
 * Ready tasks in the order they are offered to runners: priority first (higher first); within one
 * priority, fair shares across groups (`group`, weighted); within a group, FIFO.
 *
 * Shape: one lane per (priority, group), each a binary heap on `seq`; the lanes that hold tasks sit
 * in one binary heap keyed on (priority desc, lane's virtual time asc, head's seq asc). So every
 * operation is O(log n + log lanes), and with one group (tasks without `group`) the lane heap holds
 * one lane per priority and the order is exactly (priority desc, seq asc).
 *
 * Fairness is stride scheduling (Waldspurger and Weihl, 1995) per priority: a lane's `pass` is the
 * virtual time of its next start, and the lane with the smallest `pass` goes next; each start
 * (`charge`) moves the lane's pass by its stride, 1 / weight, and the priority's global pass `vtime`
 * by 1 / (the weights of the lanes holding tasks). So while groups are backlogged each gets starts in
 * proportion to its weight, and `vtime` follows the service actually given:
 * - a lane that becomes backlogged again (it drained, then refilled) starts at max(its own pass,
 *   vtime): idle time earns no credit, and it never waits behind work queued while it had none;
 * - `vtime`, where a new group starts, advances with every start, so a newcomer lines up with the
 *   turns already due, not ahead of them all.
 * Ties go to the older head, so equal groups alternate.
 *
 * Only starts are charged, not pops: a task skipped in a pass (no runner can take it now) or held by
 * a policy costs its group nothing. Nor can a lane bank turns it could not use: a pass keeps popping
 * the lane with the lowest pass until one of its tasks starts or it holds nothing (then it is idle,
 * and rejoins at `vtime`). Removal is lazy: a task that left the ready state is skipped by the
 * caller when it reaches the top.
 */
import { MinHeap } from '../../common/min-heap';

export interface Queued {
  priority: number;
  /** Monotonic insertion number: FIFO within a group. */
  seq: number;
  /** Fair-share group; null: the default group. */
  group: string | null;
}

interface Level {
  priority: number;
  /** Global pass: virtual time, moved by 1 / `weight` per start at this priority. */
  vtime: number;
  /** Weights of the lanes of this level in the lane heap (holding tasks). */
  weight: number;
  lanes: Map<string | null, Lane<Queued>>;
  /** Lanes of this level in the lane heap (holding tasks). */
  active: number;
}

interface Lane<T extends Queued> {
  level: Level;
  group: string | null;
  weight: number;
  /** 1 / weight: how far `pass` moves per start. */
  stride: number;
  /** Virtual time of the lane's next start. */
  pass: number;
  /** Its tasks, FIFO (a heap on seq: a task pushed back goes back to its place). */
  items: MinHeap<T>;
  /** Index in the lane heap; -1 while the lane holds nothing (idle). */
  at: number;
}

/** Where a task stands among the groups of its priority (for `explain`). */
export interface Turns {
  /** Groups at this priority holding ready tasks, its own included. */
  groups: number;
  /** Its group's weight, and the sum of the weights of those groups. */
  weight: number;
  totalWeight: number;
}

/** Idle lanes kept before a sweep forgets those that carry nothing (amortised O(1) per pop). */
const SWEEP_AT = 1024;

export class ReadyQueue<T extends Queued> {
  private readonly levels = new Map<number, Level>();
  /** Lanes holding tasks, as a binary heap. */
  private readonly heap: Lane<T>[] = [];
  private count = 0;
  private idle = 0;
  /** Idle lanes that start the next sweep: twice what the last one kept, so sweeps stay amortised. */
  private sweepAt = SWEEP_AT;
  /** The lane last looked up: with one group and one priority, every lookup is this one. */
  private last: Lane<T> | null = null;

  /** `weightOf`: a group's weight (> 0); default 1 for every group. */
  constructor(private readonly weightOf: (group: string | null) => number = () => 1) {}

  /** Lanes kept: (priority, group) pairs holding tasks, or idle with a pass still to remember. */
  get lanes(): number {
    return this.heap.length + this.idle;
  }

  /** Tasks queued, including those that left the ready state and are not popped yet. */
  get size(): number {
    return this.count;
  }

  push(item: T): void {
    const lane = this.laneOf(item.priority, item.group, true) as Lane<T>;
    lane.items.push(item);
    this.count++;
    if (lane.at < 0) {
      // Backlogged again: no credit for the time it held nothing.
      if (lane.pass < lane.level.vtime) lane.pass = lane.level.vtime;
      lane.level.active++;
      lane.level.weight += lane.weight;
      this.idle--;
      lane.at = this.heap.length;
      this.heap.push(lane);
      this.up(lane.at);
    } else if (lane.items.peek() === item) this.up(lane.at); // pushed back ahead of the lane's head
  }

  /** The next task: highest priority, the group whose turn it is, its oldest task. */
  pop(): T | undefined {
    const lane = this.heap[0];
    if (lane === undefined) return undefined;
    const top = lane.items.pop();
    if (lane.items.size > 0) this.down(0);
    else this.retire(lane);
    this.count--;
    return top;
  }

  /** `item` (popped) was started: its group's turn moves on by 1 / weight. */
  charge(item: T): void {
    const lane = this.laneOf(item.priority, item.group, false);
    if (!lane) return;
    const level = lane.level;
    // The lane may have gone idle with this very task: it still shared this start.
    const sharing = lane.at < 0 ? level.weight + lane.weight : level.weight;
    lane.pass += lane.stride;
    level.vtime += 1 / sharing;
    if (lane.at >= 0) this.down(lane.at);
  }

  /** How `item`'s group shares its priority now. */
  turns(item: Queued): Turns {
    const level = this.levels.get(item.priority);
    const weight = this.weightOf(item.group);
    let groups = 0;
    let totalWeight = 0;
    for (const lane of level?.lanes.values() ?? []) {
      if (lane.at < 0 && lane.group !== item.group) continue;
      groups++;
      totalWeight += lane.weight;
    }
    if (!level?.lanes.has(item.group)) {
      groups++;
      totalWeight += weight;
    }
    return { groups, weight, totalWeight };
  }

  private laneOf(priority: number, group: string | null, make: boolean): Lane<T> | null {
    const last = this.last;
    if (last !== null && last.group === group && last.level.priority === priority) return last;
    let level = this.levels.get(priority);
    if (!level) {
      if (!make) return null;
      level = { priority, vtime: 0, weight: 0, lanes: new Map(), active: 0 };
      this.levels.set(priority, level);
    }
    let lane = level.lanes.get(group) as Lane<T> | undefined;
    if (!lane) {
      if (!make) return null;
      const weight = this.weightOf(group);
      lane = {
        level,
        group,
        weight,
        stride: 1 / weight,
        pass: level.vtime,
        items: new MinHeap<T>(bySeq),
        at: -1,
      };
      level.lanes.set(group, lane as Lane<Queued>);
      this.idle++;
    }
    this.last = lane;
    return lane;
  }

  /** `lane` holds nothing now: out of the heap, kept (with its pass) until a sweep. */
  private retire(lane: Lane<T>): void {
    const h = this.heap;
    const at = lane.at;
    const moved = h.pop() as Lane<T>;
    lane.at = -1;
    const level = lane.level;
    level.active--;
    // Exactly 0 when nothing is left, whatever the rounding of the sums.
    level.weight = level.active === 0 ? 0 : level.weight - lane.weight;
    this.idle++;
    if (moved !== lane) {
      h[at] = moved;
      moved.at = at;
      this.down(at);
      this.up(moved.at);
    }
    if (this.idle > this.sweepAt && this.idle > 2 * h.length) this.sweep();
  }

  /**
   * Forgets idle lanes whose pass the level's vtime has reached (they owe nothing), and every idle lane
   * of a level where no group holds tasks (nobody to owe). Bounds memory by the groups with work.
   */
  private sweep(): void {
    for (const [priority, level] of this.levels) {
      for (const [group, lane] of level.lanes)
        if (lane.at < 0 && (level.active === 0 || lane.pass <= level.vtime)) {
          level.lanes.delete(group);
          this.idle--;
        }
      if (level.lanes.size === 0) this.levels.delete(priority);
    }
    this.last = null;
    this.sweepAt = Math.max(SWEEP_AT, 2 * this.idle);
  }

  private up(i: number): void {
    const h = this.heap;
    const lane = h[i];
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(lane, h[parent])) break;
      h[i] = h[parent];
      h[i].at = i;
      i = parent;
    }
    h[i] = lane;
    lane.at = i;
  }

  private down(i: number): void {
    const h = this.heap;
    const lane = h[i];
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = l;
      if (l >= h.length) break;
      if (r < h.length && before(h[r], h[l])) m = r;
      if (!before(h[m], lane)) break;
      h[i] = h[m];
      h[i].at = i;
      i = m;
    }
    h[i] = lane;
    lane.at = i;
  }
}

/** Whether lane `a` goes before lane `b`: higher priority, then smaller pass, then older head. */
function before(a: Lane<Queued>, b: Lane<Queued>): boolean {
  const pa = a.level.priority;
  const pb = b.level.priority;
  if (pa !== pb) return pa > pb;
  if (a.pass !== b.pass) return a.pass < b.pass;
  return (a.items.peek() as Queued).seq < (b.items.peek() as Queued).seq;
}

function bySeq(a: Queued, b: Queued): boolean {
  return a.seq < b.seq;
}

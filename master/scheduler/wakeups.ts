/**
 * The scheduler's one timer: a min-heap of wake-up times with a single `setTimeout` armed for the
 * earliest. Every policy that waits for a time (a retry's backoff, the timeout sweep, a policy added
 * to the list that holds a task until a time) puts its wake-up here instead of owning a timer.
 * Entries are never removed early: whoever fires checks that what it woke for still holds (a task's
 * `seq` fences a requeue, as in the ready queue).
 */

import { MinHeap } from '../../common/min-heap';

/** The longest delay a Node timer honours; a later wake-up re-arms when this one fires. */
const MAX_DELAY = 2 ** 31 - 1;

export class Wakeups<T extends { at: number }> {
  private readonly heap = new MinHeap<T>((a, b) => a.at < b.at);
  private timer: NodeJS.Timeout | null = null;
  /** When the armed timer fires (Infinity: none armed). */
  private armedAt = Infinity;
  private closed = false;

  constructor(private readonly fire: (item: T) => void) {}

  get size(): number {
    return this.heap.size;
  }

  push(item: T): void {
    if (this.closed) return;
    this.heap.push(item);
    if (item.at < this.armedAt) this.arm();
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.heap.clear();
  }

  private arm(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.armedAt = Infinity;
    const first = this.heap.peek();
    if (first === undefined || this.closed) return;
    this.armedAt = first.at;
    this.timer = setTimeout(this.run, Math.min(MAX_DELAY, Math.max(0, this.armedAt - Date.now())));
    this.timer.unref();
  }

  private readonly run = (): void => {
    this.timer = null;
    this.armedAt = Infinity;
    const now = Date.now();
    for (let w = this.heap.peek(); w !== undefined && w.at <= now; w = this.heap.peek())
      this.fire(this.heap.pop() as T);
    this.arm();
  };
}

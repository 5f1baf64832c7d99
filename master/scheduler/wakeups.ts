/**
 * The scheduler's one timer: a min-heap of wake-up times with a single `setTimeout` armed for the
 * earliest. Every policy that waits for a time (a retry's backoff, the timeout sweep, a policy added
 * to the list that holds a task until a time) puts its wake-up here instead of owning a timer.
 * Entries are never removed early: whoever fires checks that what it woke for still holds (a task's
 * `seq` fences a requeue, as in the ready queue).
 */

/** The longest delay a Node timer honours; a later wake-up re-arms when this one fires. */
const MAX_DELAY = 2 ** 31 - 1;

export class Wakeups<T extends { at: number }> {
  private heap: T[] = [];
  private timer: NodeJS.Timeout | null = null;
  /** When the armed timer fires (Infinity: none armed). */
  private armedAt = Infinity;
  private closed = false;

  constructor(private readonly fire: (item: T) => void) {}

  get size(): number {
    return this.heap.length;
  }

  push(item: T): void {
    if (this.closed) return;
    const h = this.heap;
    h.push(item);
    let i = h.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (h[parent].at <= h[i].at) break;
      [h[i], h[parent]] = [h[parent], h[i]];
      i = parent;
    }
    if (item.at < this.armedAt) this.arm();
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.heap = [];
  }

  private arm(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.armedAt = Infinity;
    if (this.heap.length === 0 || this.closed) return;
    this.armedAt = this.heap[0].at;
    this.timer = setTimeout(this.run, Math.min(MAX_DELAY, Math.max(0, this.armedAt - Date.now())));
    this.timer.unref();
  }

  private readonly run = (): void => {
    this.timer = null;
    this.armedAt = Infinity;
    const now = Date.now();
    while (this.heap.length > 0 && this.heap[0].at <= now) this.fire(this.pop() as T);
    this.arm();
  };

  private pop(): T | undefined {
    const h = this.heap;
    const top = h[0];
    const last = h.pop() as T;
    if (h.length > 0) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && h[l].at < h[m].at) m = l;
        if (r < h.length && h[r].at < h[m].at) m = r;
        if (m === i) break;
        [h[i], h[m]] = [h[m], h[i]];
        i = m;
      }
    }
    return top;
  }
}

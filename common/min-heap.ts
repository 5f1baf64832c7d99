/**
 * A binary heap under the caller's order: `before(a, b)` is true when `a` comes out first. O(log n)
 * push and pop. The one heap behind the scheduler's wake-ups (master/scheduler/wakeups.ts), each
 * lane of the ready queue (ready-queue.ts) and each limit's line of held tasks (policies/limits.ts).
 */
/** Whether `a` comes out before `b` (a method's type, so a heap of a subtype is one of its base). */
type Order<T> = { before(a: T, b: T): boolean }['before'];

export class MinHeap<T> {
  private items: T[] = [];

  constructor(private readonly before: Order<T>) {}

  get size(): number {
    return this.items.length;
  }

  /** The first item, left in place. */
  peek(): T | undefined {
    return this.items[0];
  }

  push(item: T): void {
    const h = this.items;
    h.push(item);
    let i = h.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.before(h[i], h[parent])) break;
      [h[i], h[parent]] = [h[parent], h[i]];
      i = parent;
    }
  }

  pop(): T | undefined {
    const h = this.items;
    if (h.length === 0) return undefined;
    const top = h[0];
    const last = h.pop() as T;
    if (h.length > 0) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && this.before(h[l], h[m])) m = l;
        if (r < h.length && this.before(h[r], h[m])) m = r;
        if (m === i) break;
        [h[i], h[m]] = [h[m], h[i]];
        i = m;
      }
    }
    return top;
  }

  clear(): void {
    this.items = [];
  }
}

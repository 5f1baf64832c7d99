/**
 * Items sent to one peer during a tick, gathered by key and sent when the tick ends: one message per
 * key rather than one per item. A cancel of a whole batch of running tasks reaches each runner as a
 * few `task:cancel` messages, not as one per attempt.
 *
 * Inputs: items by key (the cancel's reason). Output: `send(items, key)` once per key at the end of
 * the tick (setImmediate), in the order the keys first came, each list cut into parts of at most
 * `maxItems` so one message stays well under the message limit.
 */
export class TickBatch<T> {
  private pending = new Map<string, T[]>();
  private scheduled = false;

  constructor(
    private readonly send: (items: T[], key: string) => void,
    private readonly maxItems = 1000,
  ) {}

  add(key: string, items: readonly T[]): void {
    if (items.length === 0) return;
    const list = this.pending.get(key);
    if (list) list.push(...items);
    else this.pending.set(key, [...items]);
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => this.flush());
  }

  /** Sends what was gathered now (also what the end of the tick does). */
  flush(): void {
    this.scheduled = false;
    const pending = this.pending;
    this.pending = new Map();
    for (const [key, items] of pending)
      for (let i = 0; i < items.length; i += this.maxItems) this.send(items.slice(i, i + this.maxItems), key);
  }
}

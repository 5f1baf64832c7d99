/**
 * Which feeder connections watch which task ids, and the delivery of final outcomes to them.
 *
 * Bounded: one connection watches at most `maxWatched` ids (its adds and its `tasks:watch`); `room`
 * says whether more fit, and the refusal names the setting. Chunked: outcomes go out at most
 * {@link DELIVERY_CHUNK} per message, with the event loop free between messages, so a cancel of a
 * large batch watched by many connections does not hold up every other socket and `/health` while
 * hundreds of megabytes are serialised in one go. Each connection gets its outcomes in order.
 */
import { wireError, type WireError } from '../protocol/errors';
import type { TaskOutcome } from '../protocol/schemas';

/** Outcomes per `task:outcomes` message (and per turn of the event loop). */
export const DELIVERY_CHUNK = 500;

/** A feeder connection as the registry sees it. */
export interface Watcher {
  readonly connected: boolean;
  data: { watched: Set<string> };
  emit(event: 'task:outcomes', payload: { outcomes: TaskOutcome[] }): unknown;
}

export class Watchers<W extends Watcher> {
  private readonly byId = new Map<string, Set<W>>();
  /** Messages not sent yet, oldest first. */
  private readonly queue: { to: W; outcomes: TaskOutcome[] }[] = [];
  private head = 0;
  private pumping = false;

  constructor(private readonly maxWatched: number) {}

  /**
   * Null when `w` may watch `ids` and `unnamed` more (tasks given no id) besides those it watches;
   * else the refusal, naming the limit.
   */
  room(w: W, ids: Iterable<string>, unnamed: number, what: string): WireError | null {
    let more = unnamed;
    for (const id of new Set(ids)) if (!w.data.watched.has(id)) more++;
    const total = w.data.watched.size + more;
    if (total <= this.maxWatched) return null;
    return wireError(
      'EVALIDATION',
      `${what}: this connection would watch ${total} task ids, more than the master's maxWatched ` +
        `(--max-watched) ${this.maxWatched}: wait for outcomes before adding or watching more, or ` +
        'use another connection',
      { watched: w.data.watched.size, adding: more, limit: this.maxWatched },
    );
  }

  watch(w: W, id: string): void {
    let set = this.byId.get(id);
    if (!set) this.byId.set(id, (set = new Set()));
    set.add(w);
    w.data.watched.add(id);
  }

  unwatch(w: W, id: string): void {
    const set = this.byId.get(id);
    if (set) {
      set.delete(w);
      if (set.size === 0) this.byId.delete(id);
    }
    w.data.watched.delete(id);
  }

  watchers(id: string): ReadonlySet<W> | undefined {
    return this.byId.get(id);
  }

  /** A connection went away: it watches nothing, and what was queued for it is dropped. */
  forget(w: W): void {
    for (const id of w.data.watched) {
      const set = this.byId.get(id);
      set?.delete(w);
      if (set?.size === 0) this.byId.delete(id);
    }
    w.data.watched.clear();
  }

  /** Queues final outcomes (already durable) for the connections watching them; they stop watching. */
  deliver(outcomes: TaskOutcome[]): void {
    const per = new Map<W, TaskOutcome[]>();
    for (const o of outcomes) {
      const set = this.byId.get(o.id);
      if (!set) continue;
      for (const w of set) {
        let list = per.get(w);
        if (!list) per.set(w, (list = []));
        list.push(o);
        w.data.watched.delete(o.id);
      }
      this.byId.delete(o.id);
    }
    for (const [to, list] of per)
      for (let i = 0; i < list.length; i += DELIVERY_CHUNK)
        this.queue.push({ to, outcomes: list.slice(i, i + DELIVERY_CHUNK) });
    this.pump();
  }

  /** Sends one message now, the rest one per turn of the event loop. */
  private pump(): void {
    if (this.pumping) return;
    const next = this.queue[this.head];
    if (!next) {
      this.queue.length = 0;
      this.head = 0;
      return;
    }
    this.queue[this.head++] = undefined as never;
    if (this.head >= 1024 && this.head * 2 >= this.queue.length) {
      this.queue.splice(0, this.head);
      this.head = 0;
    }
    if (next.to.connected) next.to.emit('task:outcomes', { outcomes: next.outcomes });
    this.pumping = true;
    setImmediate(() => {
      this.pumping = false;
      this.pump();
    });
  }
}

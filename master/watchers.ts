/**
 * Which feeder connections watch which task ids, and the delivery of final outcomes to them.
 *
 * Bounded: one connection watches at most `maxWatched` ids (its adds and its `tasks:watch`); `room`
 * says whether more fit, and the refusal names the setting. Chunked: outcomes go out at most
 * {@link DELIVERY_CHUNK} per message; sorting them to their connections and sending the messages
 * both run in time slices (common/time-slice.ts) with the event loop free between them, so a cancel
 * of a large batch watched by many connections does not hold up every other socket and `/health`
 * while millions of (outcome, connection) pairs are sorted and hundreds of megabytes serialised.
 * Each connection gets its outcomes in order, each once.
 */
import { TimeSlice } from '../common/time-slice';
import { wireError, type WireError } from '../protocol/errors';
import type { TaskOutcome } from '../protocol/schemas';

/** Outcomes per `task:outcomes` message. */
export const DELIVERY_CHUNK = 500;

/** A feeder connection as the registry sees it. */
export interface Watcher {
  readonly connected: boolean;
  data: { watched: Set<string> };
  emit(event: 'task:outcomes', payload: { outcomes: TaskOutcome[] }): unknown;
}

export class Watchers<W extends Watcher> {
  /**
   * Who watches each id: the connection itself while it is the only one (nearly always: the feeder
   * that added the task), a set once a second one watches. A set per id would cost every queued task
   * ~150 bytes more.
   */
  private readonly byId = new Map<string, W | Set<W>>();
  /** Outcomes not yet sorted to their connections, oldest first. */
  private readonly incoming: TaskOutcome[][] = [];
  /** The outcomes being sorted: the next one's index, and each connection's message so far. */
  private routing: { outcomes: TaskOutcome[]; next: number; per: Map<W, TaskOutcome[]> } | null = null;
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
    const by = this.byId.get(id);
    if (by === undefined) this.byId.set(id, w);
    else if (by instanceof Set) by.add(w);
    else if (by !== w) this.byId.set(id, new Set([by, w]));
    w.data.watched.add(id);
  }

  unwatch(w: W, id: string): void {
    this.drop(w, id);
    w.data.watched.delete(id);
  }

  /** The connections watching `id`. */
  watchers(id: string): Iterable<W> {
    const by = this.byId.get(id);
    if (by === undefined) return [];
    return by instanceof Set ? by : [by];
  }

  /** A connection went away: it watches nothing, and what was queued for it is dropped. */
  forget(w: W): void {
    for (const id of w.data.watched) this.drop(w, id);
    w.data.watched.clear();
  }

  /** `w` no longer watches `id` (its own list of ids is the caller's to change). */
  private drop(w: W, id: string): void {
    const by = this.byId.get(id);
    if (by === w) this.byId.delete(id);
    else if (by instanceof Set) {
      by.delete(w);
      if (by.size === 0) this.byId.delete(id);
      else if (by.size === 1) this.byId.set(id, by.values().next().value as W);
    }
  }

  /**
   * Queues final outcomes (already durable) for the connections watching them; they stop watching
   * each as it is sorted to them. Sent from the next turn of the event loop on.
   */
  deliver(outcomes: TaskOutcome[]): void {
    if (outcomes.length === 0) return;
    this.incoming.push(outcomes);
    this.schedule();
  }

  private schedule(): void {
    if (this.pumping) return;
    this.pumping = true;
    setImmediate(() => {
      this.pumping = false;
      this.pump();
    });
  }

  /** One slice: sorts outcomes to their connections, then sends messages (at least one), oldest first. */
  private pump(): void {
    const slice = new TimeSlice();
    this.route(slice);
    while (this.head < this.queue.length) {
      const next = this.queue[this.head];
      this.queue[this.head++] = undefined as never;
      if (next.to.connected) next.to.emit('task:outcomes', { outcomes: next.outcomes });
      if (slice.due()) break;
    }
    if (this.head >= this.queue.length) {
      this.queue.length = 0;
      this.head = 0;
    } else if (this.head >= 1024 && this.head * 2 >= this.queue.length) {
      this.queue.splice(0, this.head);
      this.head = 0;
    }
    if (this.head < this.queue.length || this.routing || this.incoming.length > 0) this.schedule();
  }

  /** Sorts outcomes into messages until the slice is used (a message is queued once it is full). */
  private route(slice: TimeSlice): void {
    for (;;) {
      if (!this.routing) {
        const outcomes = this.incoming.shift();
        if (!outcomes) return;
        this.routing = { outcomes, next: 0, per: new Map() };
      }
      const r = this.routing;
      while (r.next < r.outcomes.length) {
        // The clock read every 64 outcomes: each costs a few microseconds per connection.
        if (r.next % 64 === 63 && slice.due()) return;
        const o = r.outcomes[r.next++];
        const by = this.byId.get(o.id);
        if (by === undefined) continue;
        if (by instanceof Set) for (const w of by) this.sortTo(r.per, w, o);
        else this.sortTo(r.per, by, o);
        this.byId.delete(o.id);
      }
      for (const [to, list] of r.per) this.queue.push({ to, outcomes: list });
      this.routing = null;
    }
  }

  /** Adds `o` to `w`'s message (queued once it is full); `w` stops watching it. */
  private sortTo(per: Map<W, TaskOutcome[]>, w: W, o: TaskOutcome): void {
    let list = per.get(w);
    if (!list) per.set(w, (list = []));
    list.push(o);
    w.data.watched.delete(o.id);
    if (list.length >= DELIVERY_CHUNK) {
      this.queue.push({ to: w, outcomes: list });
      per.delete(w);
    }
  }
}

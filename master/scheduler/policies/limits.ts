/**
 * Rate limits and concurrency caps (`--limit`, `/api/limits`; the rules are parsed by
 * master/scheduler/limit-spec.ts). Each selector that limits a task is a gate: `module:NAME`,
 * `group:NAME`, and for `group:*` one gate per group. A ready task goes only when every gate it passes
 * through is open; a task that meets a closed gate waits in that gate's own line (ordered like the
 * ready queue: priority, then arrival), out of the ready queue, and the gate hands back as many as it
 * has room for when it opens, each with its own sequence number: a limited task keeps its place among
 * the tasks of its priority. A newer task meeting a gate whose line holds an older one waits behind it.
 *
 * Counting starts so that the starts inside the children obey the window, whatever the delay from
 * assignment to start: an assignment takes a place in the window at once, with no time yet (pending,
 * it does not expire); it gets its time when the runner reports the start (or the attempt ends, or is
 * lost), which is never before the child started. So start k+N is sent no earlier than a window
 * after the report of start k, itself after start k: no window of that length holds more than N
 * starts. A task may be assigned up to LOOKAHEAD_MS before its gate opens, its assignment sent when
 * it does (`assigned` says when), so the write before a send does not slow every start.
 *
 * Concurrency counts the tasks assigned or running (recovered attempts included). A task module may
 * also say that it hit a limit (`this.rateLimited(ms)`, or an error with code ERATELIMITED): its gates
 * close for that long (a module without a limit gets a gate for it).
 *
 * Costs nothing when no limit is set: the policy and the core's hooks read one flag (`any`).
 * The windows live in memory: after a restart or a takeover, a window starts empty.
 */
import { MinHeap } from '../../../common/min-heap';
import type { LimitGateView, TaskPolicy } from '../policy';
import type { LimitRule, LimitSpec } from '../limit-spec';
import type { TaskRecord } from '../../task-record';

/** A task waiting in a gate's line, as it was queued (its `seq` fences a stale entry). */
interface Held {
  priority: number;
  seq: number;
  task: TaskRecord;
}

/** While tasks wait in a line, a gate looks again at least this often (a line never sticks). */
const RECHECK_MS = 1000;

/**
 * A task may be assigned this long before its gate opens: its assignment is written meanwhile and
 * sent when the gate opens (`Limits.assigned` gives the time), so the database write before a send
 * does not add to every start's cost. Its runner's slot is held that long.
 */
export const LOOKAHEAD_MS = 250;

/** Added to a reported start's time (`Gate.stamp`). */
export const CLOCK_MARGIN_MS = 5;

export class Gate implements LimitGateView {
  rate: { n: number; windowMs: number } | null = null;
  concurrent: number | null = null;
  /** The spec as the operator gave it, for explain and the API. */
  spec = '';
  /** Starts assigned whose start is not reported yet: they hold a place and do not expire. */
  pending = 0;
  /** Reported starts (epoch ms), oldest first from `head`. */
  private times: number[] = [];
  private head = 0;
  /** Assigned or running now. */
  running = 0;
  /** Closed until then by a task that reported ERATELIMITED. */
  pausedUntil = 0;
  /** Tasks waiting for this gate, in queue order. */
  readonly line = new HeldLine();
  /** Tasks handed back from the line and not assigned (or held) since: they have room kept for them. */
  readonly out = new Set<TaskRecord>();
  /** When a wake-up is armed for (Infinity: none). */
  armedAt = Infinity;

  constructor(
    /** `module:resize`, `group:acme`, `group:* (acme)`. */
    readonly label: string,
  ) {}

  configure(spec: string, limit: LimitSpec): void {
    this.spec = spec;
    this.rate = limit.rate ?? null;
    this.concurrent = limit.concurrent ?? null;
  }

  /** Drops starts older than the window. */
  private expire(now: number): void {
    if (!this.rate) return;
    const oldest = now - this.rate.windowMs;
    const t = this.times;
    while (this.head < t.length && t[this.head] <= oldest) this.head++;
    if (this.head > 1024 && this.head * 2 > t.length) {
      this.times = t.slice(this.head);
      this.head = 0;
    }
  }

  /** How many more may start now (0: closed). */
  room(now: number): number {
    this.expire(now);
    return this.roomAt(now);
  }

  /**
   * How many more may start by `at` (now or later): the starts pending, and the reported ones still
   * in the window then, count. Changes nothing.
   */
  roomAt(at: number): number {
    if (this.pausedUntil > at) return 0;
    let room = Infinity;
    if (this.concurrent !== null) room = this.concurrent - this.running;
    if (this.rate) {
      // The first reported start still in the window at `at` (the times are sorted).
      const oldest = at - this.rate.windowMs;
      let lo = this.head;
      let hi = this.times.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (this.times[mid] <= oldest) lo = mid + 1;
        else hi = mid;
      }
      room = Math.min(room, this.rate.n - this.pending - (this.times.length - lo));
    }
    return Math.max(0, room);
  }

  /**
   * Whether `t` may pass now: room by `LOOKAHEAD_MS` from now (its assignment is then sent no earlier
   * than `opensAt`), and no older task of its priority waiting in the line.
   */
  admits(t: TaskRecord, now: number): boolean {
    this.expire(now);
    if (this.roomAt(now + LOOKAHEAD_MS) <= 0) return false;
    const first = this.line.peek();
    return first === undefined || !queuedBefore(first, t);
  }

  /** When the room grows next by time alone (a start leaving the window, a pause ending); Infinity if never. */
  opensAt(now: number): number {
    let at = this.pausedUntil > now ? this.pausedUntil : now;
    if (this.rate) {
      this.expire(now);
      const stamped = this.times.length - this.head;
      const over = this.pending + stamped - this.rate.n;
      if (over >= 0) {
        // The (over+1)-th oldest reported start must leave; if it is still pending, no time is known.
        if (over >= stamped) return Infinity;
        at = Math.max(at, this.times[this.head + over] + this.rate.windowMs);
      }
    }
    if (this.concurrent !== null && this.running >= this.concurrent) return Infinity;
    return at;
  }

  /** The next time a start leaves the window, if any. */
  nextExpiry(now: number): number {
    this.expire(now);
    if (!this.rate || this.head >= this.times.length) return Infinity;
    return this.times[this.head] + this.rate.windowMs;
  }

  /** A pending start was reported (or its attempt ended): it gets its time and can expire. */
  stamp(now: number): void {
    if (this.pending > 0) this.pending--;
    if (!this.rate) return;
    // The report came after the start, but `Date.now()` drops the fraction of a millisecond, and a
    // child's clock may read a little ahead of this one: a few ms of margin keep the start inside.
    now += CLOCK_MARGIN_MS;
    const t = this.times;
    // Kept sorted: a clock stepping back does not move a start into the past.
    t.push(t.length > this.head ? Math.max(now, t[t.length - 1]) : now);
  }
}

export interface LimitsHooks {
  /** Puts a task that waited in a line back into the ready queue, with its own sequence number. */
  requeue(t: TaskRecord, seq: number): void;
  /** Calls `run` at `at` (the scheduler's wake-up heap). */
  wakeAt(at: number, run: () => void): void;
}

/** The gates and their counts: the limits policy's state (`PolicyContext.limits`). */
export class Limits {
  /** Whether any gate exists: everything else is skipped when not. */
  any = false;
  private readonly modules = new Map<string, Gate>();
  private readonly groups = new Map<string, Gate>();
  /** `group:*`: its spec, and one gate per group met so far. */
  private eachGroup: { spec: string; limit: LimitSpec } | null = null;
  private readonly perGroup = new Map<string, Gate>();
  /** Tasks counted as running in their gates' `running`. */
  private readonly counted = new Set<TaskRecord>();
  /** Assigned tasks whose start is pending in these gates. */
  private readonly pendingOf = new Map<TaskRecord, Gate[]>();
  /** Gates with tasks in their line. */
  private readonly holding = new Set<Gate>();

  constructor(
    private readonly tasks: ReadonlyMap<string, TaskRecord>,
    private readonly hooks: LimitsHooks,
  ) {}

  /**
   * The rules in effect now (replacing the previous ones): gates of selectors still limited keep
   * their counts and lines; tasks in the line of a gate that goes are handed back. Concurrency is
   * counted again from the tasks in memory (attempts assigned before the rule count).
   */
  configure(rules: Iterable<LimitRule>): void {
    const now = Date.now();
    const keep = new Set<Gate>();
    let each: { spec: string; limit: LimitSpec } | null = null;
    for (const r of rules) {
      const [kind, name] = splitSelector(r.selector);
      if (r.limit.rate === undefined && r.limit.concurrent === undefined) continue;
      if (kind === 'group' && name === '*') {
        each = { spec: r.spec, limit: r.limit };
        continue;
      }
      const map = kind === 'module' ? this.modules : this.groups;
      let g = map.get(name);
      if (!g) map.set(name, (g = new Gate(r.selector)));
      g.configure(r.spec, r.limit);
      keep.add(g);
    }
    this.eachGroup = each;
    for (const g of this.perGroup.values()) if (each) g.configure(each.spec, each.limit);
    const gone: Gate[] = [];
    for (const map of [this.modules, this.groups])
      for (const [name, g] of map)
        if (!keep.has(g) && g.pausedUntil <= now) {
          map.delete(name);
          gone.push(g);
        } else if (!keep.has(g)) g.configure('', {});
    if (!each) {
      gone.push(...this.perGroup.values());
      this.perGroup.clear();
    }
    this.any = this.modules.size + this.groups.size + this.perGroup.size > 0 || each !== null;
    this.recount();
    for (const g of gone) this.releaseAll(g);
    for (const g of this.allGates()) this.release(g, now);
  }

  /** The gates `t` passes through, in the order they are asked. */
  gatesOf(t: TaskRecord, out: Gate[]): Gate[] {
    out.length = 0;
    const m = this.modules.get(t.module);
    if (m) out.push(m);
    if (t.group != null) {
      const g = this.groups.get(t.group);
      if (g) out.push(g);
      const e = this.groupGate(t.group);
      if (e) out.push(e);
    }
    return out;
  }

  /** The first gate that keeps `t` now, or null. Allocates nothing (but a group's first gate). */
  closed(t: TaskRecord, now: number): Gate | null {
    const m = this.modules.get(t.module);
    if (m && !m.admits(t, now)) return m;
    if (t.group == null) return null;
    const g = this.groups.get(t.group);
    if (g && !g.admits(t, now)) return g;
    const e = this.groupGate(t.group);
    if (e && !e.admits(t, now)) return e;
    return null;
  }

  /** `t` met a closed gate: it waits in that gate's line. */
  hold(t: TaskRecord, now: number): void {
    for (const x of this.gatesOf(t, [])) x.out.delete(t);
    const g = this.closed(t, now);
    if (!g) return this.hooks.requeue(t, t.seq);
    g.line.push({ priority: t.priority, seq: t.seq, task: t });
    this.holding.add(g);
    this.arm(g, now);
  }

  /**
   * `t` was assigned: a start in each of its gates, pending until reported; one more running.
   * Returns when its assignment may be sent (epoch ms): when the last of its gates opens for it,
   * within LOOKAHEAD_MS (0: at once).
   */
  assigned(t: TaskRecord): number {
    const gates = this.gatesOf(t, []);
    if (gates.length === 0) return 0;
    const now = Date.now();
    let at = 0;
    for (const g of gates) {
      g.out.delete(t);
      // Before this start is counted: the time the gate has room for one more.
      at = Math.max(at, g.opensAt(now));
      g.pending++;
      g.running++;
    }
    this.counted.add(t);
    this.pendingOf.set(t, gates);
    return at > now && Number.isFinite(at) ? at : 0;
  }

  /** `t` runs again without a new start (a reclaimed attempt): it counts as running. */
  adopt(t: TaskRecord): void {
    if (this.counted.has(t)) return;
    this.counted.add(t);
    for (const g of this.gatesOf(t, [])) g.running++;
  }

  /** The runner reported `t` started: its pending starts get their time. */
  began(t: TaskRecord): void {
    const gates = this.pendingOf.get(t);
    if (!gates) return;
    this.pendingOf.delete(t);
    const now = Date.now();
    for (const g of gates) {
      g.stamp(now);
      if (g.line.size > 0) this.arm(g, now);
    }
  }

  /** `t`'s attempt ended (a result, a loss, a cancel): its gates have room for one more. */
  ended(t: TaskRecord): void {
    this.began(t);
    if (!this.counted.delete(t)) return;
    const now = Date.now();
    const gates = this.gatesOf(t, []);
    for (const g of gates) {
      if (g.running > 0) g.running--;
      if (g.line.size > 0) this.release(g, now);
    }
  }

  /** A task said it hit a limit: its gates (its module's, made for it if none) close for `ms`. */
  pause(t: TaskRecord, ms: number): Gate[] {
    const now = Date.now();
    const until = now + ms;
    const gates = this.gatesOf(t, []);
    if (gates.length === 0) {
      const g = new Gate(`module:${t.module}`);
      this.modules.set(t.module, g);
      this.any = true;
      gates.push(g);
    }
    for (const g of gates) {
      g.pausedUntil = Math.max(g.pausedUntil, until);
      this.arm(g, now);
    }
    return gates;
  }

  /** When `t`, kept by `g`, may go: a time, or null when it waits for a running task to end. */
  mayGoAt(g: LimitGateView, now: number): number | null {
    const at = (g as Gate).opensAt(now);
    return Number.isFinite(at) ? at : null;
  }

  /** The gates and what they count, for the API. */
  status(now = Date.now()): GateStatus[] {
    const out: GateStatus[] = [];
    for (const g of this.allGates()) {
      const at = g.opensAt(now);
      out.push({
        gate: g.label,
        spec: g.spec,
        running: g.running,
        waiting: g.line.size,
        room: g.room(now),
        ...(g.pausedUntil > now ? { pausedUntil: new Date(g.pausedUntil).toISOString() } : {}),
        ...(g.room(now) === 0 && Number.isFinite(at) ? { opensAt: new Date(at).toISOString() } : {}),
      });
    }
    return out;
  }

  private *allGates(): Iterable<Gate> {
    yield* this.modules.values();
    yield* this.groups.values();
    yield* this.perGroup.values();
  }

  private groupGate(group: string): Gate | undefined {
    if (!this.eachGroup) return undefined;
    let g = this.perGroup.get(group);
    if (!g) {
      g = new Gate(`group:* (${group})`);
      g.configure(this.eachGroup.spec, this.eachGroup.limit);
      this.perGroup.set(group, g);
      for (const t of this.counted) if (t.group === group) g.running++;
    }
    return g;
  }

  /** Concurrency from the tasks in memory: every attempt assigned or running counts (recovered ones too). */
  recount(): void {
    this.counted.clear();
    for (const g of this.allGates()) g.running = 0;
    if (!this.any) {
      this.pendingOf.clear();
      return;
    }
    const gates: Gate[] = [];
    for (const t of this.tasks.values()) {
      if (t.state !== 'assigned' && t.state !== 'running') continue;
      this.counted.add(t);
      for (const g of this.gatesOf(t, gates)) g.running++;
    }
  }

  /** Hands back as many waiting tasks as `g` has room for; looks again later if some still wait. */
  private release(g: Gate, now: number): void {
    g.room(now);
    for (const t of g.out) if (t.state !== 'ready') g.out.delete(t);
    let room = g.roomAt(now + LOOKAHEAD_MS) - g.out.size;
    while (room > 0) {
      const h = g.line.pop();
      if (!h) break;
      if (!live(h)) continue;
      g.out.add(h.task);
      this.hooks.requeue(h.task, h.seq);
      room--;
    }
    if (g.line.size === 0) this.holding.delete(g);
    else this.arm(g, now);
  }

  private releaseAll(g: Gate): void {
    for (let h = g.line.pop(); h; h = g.line.pop()) if (live(h)) this.hooks.requeue(h.task, h.seq);
    this.holding.delete(g);
  }

  /** A wake-up for `g` at its next opening (at least every RECHECK_MS while tasks wait). */
  private arm(g: Gate, now: number): void {
    // Never at once: what was handed back is assigned first (the pass runs before the next timers).
    const at = Math.max(
      now + 1,
      Math.min(g.opensAt(now) - LOOKAHEAD_MS, g.nextExpiry(now) - LOOKAHEAD_MS, now + RECHECK_MS),
    );
    if (at >= g.armedAt) return;
    g.armedAt = at;
    this.hooks.wakeAt(at, () => {
      if (g.armedAt !== at) return;
      g.armedAt = Infinity;
      if (g.line.size > 0) this.release(g, Date.now());
    });
  }
}

export interface GateStatus {
  gate: string;
  spec: string;
  running: number;
  waiting: number;
  room: number;
  pausedUntil?: string;
  opensAt?: string;
}

/** `module:x` → ['module', 'x']; the rules were parsed already. */
function splitSelector(selector: string): [string, string] {
  const at = selector.indexOf(':');
  return [selector.slice(0, at), selector.slice(at + 1)];
}

function live(h: Held): boolean {
  return h.task.state === 'ready' && h.task.seq === h.seq;
}

function queuedBefore(a: Held, t: TaskRecord): boolean {
  return a.priority !== t.priority ? a.priority > t.priority : a.seq < t.seq;
}

/** A gate's line, in ready-queue order; stale entries are dropped when they reach the top. */
class HeldLine extends MinHeap<Held> {
  constructor() {
    super((a, b) => (a.priority !== b.priority ? a.priority > b.priority : a.seq < b.seq));
  }

  /** The first live entry (stale ones above it are dropped). */
  override peek(): Held | undefined {
    for (let h = super.peek(); h !== undefined && !live(h); h = super.peek()) this.pop();
    return super.peek();
  }
}

/**
 * A ready task waits while a gate it passes through is closed (LIMITED): in that gate's line, handed
 * back in order when the gate opens (`Limits.hold`).
 */
export const limited: TaskPolicy = {
  name: 'limits',
  scope: 'task',
  check: (ctx, t, now) => (ctx.limits.any && ctx.limits.closed(t, now) ? 'LIMITED' : null),
  describe(ctx, _code, t, now) {
    const g = ctx.limits.closed(t, now);
    if (!g) return 'limited';
    const at = ctx.limits.mayGoAt(g, now);
    const what =
      g.pausedUntil > now
        ? `${g.label} paused by a task that reported ERATELIMITED`
        : g.room(now) > 0
          ? `${g.label} (${g.spec}): behind ${g.line.size} older task${g.line.size === 1 ? '' : 's'} waiting for it`
          : `${g.label} (${g.spec})`;
    const when =
      at === null
        ? 'when one of its running tasks ends'
        : `at ${new Date(at).toISOString()} (in ${Math.max(0, at - now)} ms)`;
    return `limited by ${what}: may go ${when}`;
  },
  until(ctx, t, now) {
    const g = ctx.limits.closed(t, now);
    return g ? ctx.limits.mayGoAt(g, now) : null;
  },
  hold: (ctx, t) => ctx.limits.hold(t, Date.now()),
};

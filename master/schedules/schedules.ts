/**
 * Recurring schedules, run by the active master only: it loads `schedules` when it becomes active
 * (`start`), fires each slot when it is due and stops when it steps down (`stop`).
 *
 * A slot creates one task, `<schedule id>@<slot time ISO>`, added through the scheduler's normal
 * path with `onExisting: 'skip'`. That id is what makes a slot fire at most once: a master that
 * added a slot's task and died before recording `lastSlot`, the master that takes over, and two
 * upserts racing each other all end at the same id, and the second add of it creates nothing. So
 * the order is: add the task (durable once the add resolves), then record the slot; never the
 * other way round, which could lose a slot.
 *
 * Slots missed while no master ran (found when the master becomes active) follow the schedule's
 * `misfire`: `skip` none, `once` the most recent, `all` each of them (at most 1,000, and no more
 * than `limit` allows), marked `backfilled`. A slot is never fired before its time: a timer that
 * fires early arms itself again.
 *
 * Every change of one schedule (an upsert, a removal, a slot) runs after the one before it
 * (`serial`); writes go through the fenced collection the master gives, so a master that lost its
 * lease writes nothing, and each update's filter holds the `rev` it read.
 */
import type { Collection } from 'mongoose';
import type { Logger } from '../../common/logger';
import { TaskmasterError, wireError, type WireError } from '../../protocol/errors';
import {
  MAX_BACKFILL,
  scheduleInputSchema,
  type ScheduleDefinition,
  type SchedulePutReply,
  type ScheduleView,
} from '../../protocol/schedules';
import { MAX_TIMER_MS, type AddReply } from '../../protocol/schemas';
import type { ScheduleDoc } from '../../models/schedule';
import { slotClock, type SlotClock } from './slots';

/** Adds a slot's tasks through the scheduler's normal path, skipping ids already stored. */
export type AddSlotTasks = (tasks: Record<string, unknown>[], batch: string) => Promise<AddReply>;

/** Wait before firing again after a refused add or a failed write. */
const RETRY_MS = 1000;

/** The task id of a schedule's slot. */
export function slotTaskId(scheduleId: string, slot: number): string {
  return `${scheduleId}@${new Date(slot).toISOString()}`;
}

interface Entry {
  readonly id: string;
  def: ScheduleDefinition;
  /** The definition as stored (`def` of the document). */
  text: string;
  clock: SlotClock;
  doc: ScheduleDoc;
  /** Every slot at or before it was fired or passed over. */
  cursor: number;
  /** Missed slots (found at start) not dealt with yet. */
  catchUp: boolean;
  timer: NodeJS.Timeout | null;
  removed: boolean;
}

export class Schedules {
  private readonly entries = new Map<string, Entry>();
  /** The work in progress on each schedule id: the next runs after it. */
  private readonly locks = new Map<string, Promise<unknown>>();
  private stopped = false;

  constructor(
    private readonly coll: Collection<ScheduleDoc>,
    private readonly add: AddSlotTasks,
    private readonly logger: Logger,
  ) {}

  /** Loads every schedule and arms it; missed slots are dealt with per `misfire` right after. */
  async start(): Promise<void> {
    const docs = await this.coll.find({}).toArray();
    for (const doc of docs) {
      let def: ScheduleDefinition;
      let clock: SlotClock;
      try {
        def = scheduleInputSchema.parse(JSON.parse(doc.def));
        clock = slotClock(def);
      } catch (err) {
        this.logger.error('schedule not loaded: its stored definition is invalid', {
          schedule: doc._id,
          error: String(err),
        });
        continue;
      }
      const e: Entry = {
        id: doc._id,
        def,
        text: doc.def,
        clock,
        doc,
        cursor: cursorOf(doc),
        catchUp: true,
        timer: null,
        removed: false,
      };
      this.entries.set(e.id, e);
      void this.serial(e.id, () => this.step(e));
    }
    if (docs.length > 0) this.logger.info('schedules loaded', { schedules: this.entries.size });
  }

  /** Stops every timer; resolves when the work in progress ended. Nothing fires after it. */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const e of this.entries.values()) if (e.timer) clearTimeout(e.timer);
    await Promise.allSettled([...this.locks.values()]);
  }

  /**
   * Creates or changes a schedule. The same definition changes nothing (`unchanged`); a new one
   * takes effect from its first slot after now, keeping `lastSlot` and `count`.
   */
  put(def: ScheduleDefinition): Promise<SchedulePutReply> {
    let clock: SlotClock;
    try {
      clock = slotClock(def);
    } catch (err) {
      return Promise.resolve({ ok: false, error: refusal(err) });
    }
    const text = canonical(def);
    return this.serial(def.id, async (): Promise<SchedulePutReply> => {
      if (this.stopped) return { ok: false, error: wireError('ESTANDBY', 'this master is not active') };
      /** A stored schedule memory could not hold (its definition invalid): the upsert replaces it. */
      let unreadable: ScheduleDoc | null = null;
      for (let tries = 0; tries < 5; tries++) {
        const e = this.entries.get(def.id);
        if (e?.text === text) return { ok: true, outcome: 'unchanged', schedule: this.view(e) };
        const now = Date.now();
        const base = e?.doc ?? unreadable;
        if (!base) {
          const doc: ScheduleDoc = {
            _id: def.id,
            def: text,
            since: new Date(now),
            nextAt: dateOf(clock.next(now - 1)),
            lastSlot: null,
            count: 0,
            created: new Date(now),
            updated: new Date(now),
            rev: 1,
          };
          try {
            await this.coll.insertOne(doc);
          } catch (err) {
            if ((err as { code?: number }).code !== 11000) throw err;
            unreadable = await this.reload(def.id); // stored already, unknown to memory: compare with it
            continue;
          }
          const fresh = this.remember(doc, def, clock);
          this.logger.info('schedule created', { schedule: def.id, nextAt: fresh.doc.nextAt });
          return { ok: true, outcome: 'created', schedule: this.view(fresh) };
        }
        const since = new Date(now);
        const cursor = Math.max(base.lastSlot?.getTime() ?? -Infinity, now - 1);
        const nextAt = dateOf(remaining(def, base.count) > 0 ? clock.next(cursor) : null);
        const set = { def: text, since, nextAt, updated: since };
        const r = await this.coll.updateOne({ _id: def.id, rev: base.rev }, { $set: set, $inc: { rev: 1 } });
        if (r.matchedCount !== 1) {
          unreadable = await this.reload(def.id);
          continue;
        }
        const changed = this.remember({ ...base, ...set, rev: base.rev + 1 }, def, clock, e);
        this.logger.info('schedule changed', { schedule: def.id, nextAt });
        return { ok: true, outcome: 'changed', schedule: this.view(changed) };
      }
      return { ok: false, error: wireError('EINTERNAL', `schedule "${def.id}" kept changing; try again`) };
    });
  }

  /** Removes a schedule: none of its slots fires from then on. False if there was none. */
  remove(id: string): Promise<boolean> {
    return this.serial(id, async () => {
      const r = await this.coll.deleteOne({ _id: id });
      const e = this.entries.get(id);
      if (e) {
        e.removed = true;
        if (e.timer) clearTimeout(e.timer);
        this.entries.delete(id);
      }
      if (e || r.deletedCount > 0) this.logger.info('schedule removed', { schedule: id });
      return e !== undefined || r.deletedCount > 0;
    });
  }

  list(): ScheduleView[] {
    return [...this.entries.values()].sort((a, b) => (a.id < b.id ? -1 : 1)).map((e) => this.view(e));
  }

  get(id: string): ScheduleView | undefined {
    const e = this.entries.get(id);
    return e && this.view(e);
  }

  // ---- firing ----------------------------------------------------------------------------------

  /** Deals with missed slots (once, after start), or fires the slots due now; then arms the timer. */
  private async step(e: Entry): Promise<void> {
    if (this.stopped || e.removed) return;
    try {
      if (e.catchUp) {
        if (await this.catchUp(e)) e.catchUp = false;
        else return this.arm(e, RETRY_MS);
      }
      const now = Date.now();
      const due: number[] = [];
      const room = Math.min(MAX_BACKFILL, remaining(e.def, e.doc.count));
      for (let t = e.clock.next(e.cursor); t !== null && t <= now && due.length < room; t = e.clock.next(t))
        due.push(t);
      if (due.length > 0 && !(await this.fire(e, due, false))) return this.arm(e, RETRY_MS);
      this.arm(e);
    } catch (err) {
      if (this.stopped) return;
      this.logger.warn('schedule not fired; trying again', { schedule: e.id, error: String(err) });
      this.arm(e, RETRY_MS);
    }
  }

  /** Slots missed while no master ran, per `misfire`. False if its add was refused (try again). */
  private async catchUp(e: Entry): Promise<boolean> {
    const now = Date.now();
    const first = e.clock.next(e.cursor);
    if (first === null || first > now) return true;
    const room = Math.min(MAX_BACKFILL, remaining(e.def, e.doc.count));
    let missed: number[] = [];
    if (e.def.misfire === 'once') {
      const latest = e.clock.latest(e.cursor, now);
      if (latest !== null && room > 0) missed = [latest];
    } else if (e.def.misfire === 'all')
      for (let t: number | null = first; t !== null && t <= now && missed.length < room; t = e.clock.next(t))
        missed.push(t);
    this.logger.info('slots missed while no master ran', {
      schedule: e.id,
      misfire: e.def.misfire,
      from: new Date(first).toISOString(),
      backfilled: missed.length,
    });
    if (missed.length > 0 && !(await this.fire(e, missed, true))) return false;
    // The rest were passed over: the next slot is the first after now.
    e.cursor = Math.max(e.cursor, now);
    return true;
  }

  /**
   * Adds the tasks of `slots` (in order), then records the last as fired. False if the add was
   * refused (nothing recorded: the same slots are tried again).
   */
  private async fire(e: Entry, slots: number[], backfilled: boolean): Promise<boolean> {
    const tasks = slots.map((t) => ({
      ...e.def.task,
      id: slotTaskId(e.id, t),
      ...(backfilled ? { backfilled: true } : {}),
    }));
    const r = await this.add(tasks, e.id);
    if (!r.ok) {
      this.logger.warn('slot tasks refused; trying again', {
        schedule: e.id,
        slot: new Date(slots[0]).toISOString(),
        error: r.error.message,
      });
      return false;
    }
    const created = r.tasks.filter((t) => !t.existing).length;
    const last = slots[slots.length - 1];
    const count = e.doc.count + created;
    const nextAt = dateOf(remaining(e.def, count) > 0 ? e.clock.next(last) : null);
    if (e.removed) return true;
    const res = await this.coll.updateOne(
      { _id: e.id, rev: e.doc.rev },
      { $set: { lastSlot: new Date(last), nextAt }, $inc: { count: created, rev: 1 } },
    );
    if (res.matchedCount === 1)
      e.doc = { ...e.doc, lastSlot: new Date(last), nextAt, count, rev: e.doc.rev + 1 };
    else this.logger.warn('schedule changed under this master; slot not recorded', { schedule: e.id });
    e.cursor = Math.max(e.cursor, last);
    return true;
  }

  /** Arms the timer for the next slot (or in `retryMs`); none once the schedule has ended. */
  private arm(e: Entry, retryMs?: number): void {
    if (e.timer) clearTimeout(e.timer);
    e.timer = null;
    if (this.stopped || e.removed) return;
    let delay = retryMs;
    if (delay === undefined) {
      const next = remaining(e.def, e.doc.count) > 0 ? e.clock.next(e.cursor) : null;
      if (next === null) return;
      delay = Math.min(Math.max(0, next - Date.now()), MAX_TIMER_MS);
    }
    e.timer = setTimeout(() => void this.serial(e.id, () => this.step(e)), delay);
    e.timer.unref();
  }

  // ---- memory ----------------------------------------------------------------------------------

  private remember(doc: ScheduleDoc, def: ScheduleDefinition, clock: SlotClock, old?: Entry): Entry {
    if (old?.timer) clearTimeout(old.timer);
    const e: Entry = {
      id: doc._id,
      def,
      text: doc.def,
      clock,
      doc,
      cursor: cursorOf(doc),
      catchUp: false,
      timer: null,
      removed: false,
    };
    this.entries.set(e.id, e);
    this.arm(e);
    return e;
  }

  /**
   * Memory out of step with the database (found by a refused write): reads the stored one again.
   * Resolves to the stored document if memory cannot hold it (its definition is invalid), else null.
   */
  private async reload(id: string): Promise<ScheduleDoc | null> {
    const doc = await this.coll.findOne({ _id: id });
    const old = this.entries.get(id);
    if (old?.timer) clearTimeout(old.timer);
    this.entries.delete(id);
    if (!doc) return null;
    try {
      const def = scheduleInputSchema.parse(JSON.parse(doc.def));
      this.remember(doc, def, slotClock(def));
      return null;
    } catch {
      return doc;
    }
  }

  private view(e: Entry): ScheduleView {
    const d = e.def;
    const next = remaining(d, e.doc.count) > 0 ? e.clock.next(e.cursor) : null;
    return {
      id: e.id,
      ...(d.cron !== undefined ? { cron: d.cron } : {}),
      ...(d.every !== undefined ? { every: d.every } : {}),
      ...(d.tz !== undefined ? { tz: d.tz } : {}),
      task: d.task,
      misfire: d.misfire,
      ...(d.startAt !== undefined ? { startAt: new Date(d.startAt).toISOString() } : {}),
      ...(d.endAt !== undefined ? { endAt: new Date(d.endAt).toISOString() } : {}),
      ...(d.limit !== undefined ? { limit: d.limit } : {}),
      nextAt: next === null ? null : new Date(next).toISOString(),
      lastSlot: e.doc.lastSlot ? e.doc.lastSlot.toISOString() : null,
      count: e.doc.count,
      created: e.doc.created.toISOString(),
      updated: e.doc.updated.toISOString(),
    };
  }

  /** Runs `fn` after the work in progress on schedule `id`. */
  private serial<T>(id: string, fn: () => Promise<T>): Promise<T> {
    const run = (this.locks.get(id) ?? Promise.resolve()).then(fn, fn);
    const tail = run.catch(() => undefined);
    this.locks.set(id, tail);
    void tail.then(() => {
      if (this.locks.get(id) === tail) this.locks.delete(id);
    });
    return run;
  }
}

/** Where a stored schedule's next slot is looked for: after its last slot, not before `since`. */
function cursorOf(doc: ScheduleDoc): number {
  return Math.max(doc.lastSlot?.getTime() ?? -Infinity, doc.since.getTime() - 1);
}

/** Tasks the schedule may still create. */
function remaining(def: ScheduleDefinition, count: number): number {
  return def.limit === undefined ? Infinity : Math.max(0, def.limit - count);
}

function dateOf(ms: number | null): Date | null {
  return ms === null ? null : new Date(ms);
}

/** The definition as JSON text with every object's keys sorted: equal definitions, equal text. */
export function canonical(value: unknown): string {
  return JSON.stringify(sortKeys(value));
}

function sortKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (v === null || typeof v !== 'object') return v;
  const o = v as Record<string, unknown>;
  return Object.fromEntries(
    Object.keys(o)
      .filter((k) => o[k] !== undefined)
      .sort()
      .map((k) => [k, sortKeys(o[k])]),
  );
}

function refusal(err: unknown): WireError {
  if (err instanceof TaskmasterError) {
    const [path, ...rest] = err.message.split(': ');
    return wireError('EVALIDATION', `invalid schedule: ${err.message}`, {
      issues: [{ path, message: rest.join(': ') }],
    });
  }
  throw err;
}

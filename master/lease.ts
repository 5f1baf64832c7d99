/**
 * The election of the active master. Every master started on a database competes for one lease
 * document (`leases`, `_id: 'master'`): its holder is the **active** master, the others are
 * **standby**. Each takeover raises `epoch`; the holder raises `beat` every `renewMs`.
 *
 * No two machines' clocks are compared, only durations measured here (`performance.now()`):
 * - A standby reads the lease every `renewMs` (at most every second). It takes the lease once its holder released it, once
 *   the holder's process is gone from this machine, or once `holder`/`epoch`/`beat` have stood still
 *   for `leaseMs` as measured by the standby since it first saw them.
 * - The holder may write only while its last successful renewal *began* less than `deadlineMs`
 *   (60 % of `leaseMs`) ago: `writable()`. Every write of the store asks it first
 *   (master/store/fence.ts). A standby first sees a beat after the renewal that wrote it began, and
 *   waits `leaseMs` from then; so the holder stops writing at least 40 % of `leaseMs` before any
 *   standby may take over, however slow the database, and a holder that was paused (SIGSTOP, a long
 *   GC, a frozen VM) finds its time gone when it wakes and writes nothing. A timer steps it down at
 *   the deadline as well.
 * Every change is a single-document `findOneAndUpdate` whose filter holds what was read (holder,
 * epoch, beat): of two standbys taking over at once exactly one wins.
 *
 * Events: `elected` (this master is active, with its epoch), `lost` (it is not any more: another
 * master took over, or its renewals failed until the deadline), `dropped` (the lease document was
 * gone: the database was dropped under the active master, which took the lease again).
 */
import { EventEmitter } from 'node:events';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import { performance } from 'node:perf_hooks';
import type { Collection } from 'mongoose';
import type { Logger } from '../common/logger';

export const LEASE_ID = 'master';
/** How often a standby reads the lease at most. */
const STANDBY_POLL_MS = 1000;

export interface LeaseDoc {
  _id: string;
  /** Unique per master process and start: `<pid>@<hostname>/<random>`. */
  holder: string;
  /** Raised at every takeover: writes of an older epoch are a deposed master's. */
  epoch: number;
  url: string;
  hostname: string;
  pid: number;
  /**
   * The holder's machine and pid namespace (Linux: boot id and `/proc/self/ns/pid`): its pid means
   * something here only when they are this process's own. Absent elsewhere.
   */
  machine?: string;
  /** When the holder took the lease (its own clock; shown, never compared). */
  since: Date;
  /** Raised by the holder at every renewal: a holder whose beat stands still for `leaseMs` is gone. */
  beat: number;
  /** The holder stopped cleanly: the lease is free. */
  released?: boolean;
}

export type Role = 'active' | 'standby';

export interface LeaseOptions {
  /** How long a silent holder keeps the lease. */
  leaseMs: number;
  url: string;
  logger: Logger;
}

/** What `/health`, `/metrics` and `taskmaster status` show of the election. */
export interface LeaseStatus {
  role: Role;
  epoch: number;
  /** The active master's advertised URL (this one's when active); null while nobody holds it. */
  active: string | null;
  holder: string | null;
  /** Since this master last renewed (active) or last saw the holder's beat move (standby). */
  ageMs: number | null;
  leaseMs: number;
}

export class MasterLease extends EventEmitter<{
  elected: [epoch: number];
  lost: [cause: string, holder: LeaseDoc | null];
  dropped: [];
}> {
  readonly holder = `${process.pid}@${os.hostname()}/${randomBytes(4).toString('hex')}`;
  readonly renewMs: number;
  readonly deadlineMs: number;
  role: Role = 'standby';
  /** The epoch held (active) or last seen (standby). */
  epoch = 0;
  private beat = 0;
  /** The lease as last read: the active master a standby points clients at. */
  private seen: LeaseDoc | null = null;
  /** When `seen`'s holder/epoch/beat were first seen as they are (standby). */
  private seenSince = 0;
  /** When the last successful renewal (or the takeover) began (active). */
  private renewedAt = 0;
  private timer: NodeJS.Timeout | null = null;
  private deadline: NodeJS.Timeout | null = null;
  private stopped = false;
  /** The round in flight: rounds never overlap. */
  private round: Promise<void> | null = null;

  constructor(
    private readonly leases: Collection<LeaseDoc>,
    private readonly opts: LeaseOptions,
  ) {
    super();
    this.renewMs = Math.max(10, Math.floor(opts.leaseMs / 5));
    this.deadlineMs = Math.floor(opts.leaseMs * 0.6);
  }

  /** Whether this master may write now: it holds the lease and renewed it within the deadline. */
  writable(): boolean {
    return this.role === 'active' && !this.stopped && performance.now() - this.renewedAt < this.deadlineMs;
  }

  status(): LeaseStatus {
    const active = this.role === 'active';
    return {
      role: this.role,
      epoch: this.epoch,
      active: active ? this.opts.url : this.seen && !this.seen.released ? this.seen.url : null,
      holder: active ? this.holder : (this.seen?.holder ?? null),
      ageMs: active
        ? Math.round(performance.now() - this.renewedAt)
        : this.seen
          ? Math.round(performance.now() - this.seenSince)
          : null,
      leaseMs: this.opts.leaseMs,
    };
  }

  /** Competes from now on; resolves after the first round (this master is then active or standby). */
  async start(): Promise<void> {
    await this.step();
    this.schedule();
  }

  private schedule(): void {
    if (this.stopped || this.timer) return;
    // A standby reads more often than the holder renews (a cheap `_id` read), so that it sees a
    // release or a vanished process at once.
    const every = this.role === 'active' ? this.renewMs : Math.min(this.renewMs, STANDBY_POLL_MS);
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.step().finally(() => this.schedule());
    }, every);
    this.timer.unref();
  }

  private step(): Promise<void> {
    this.round ??= (this.role === 'active' ? this.renew() : this.compete())
      .catch((err: unknown) => {
        // The database is away: the next round tries again. An active master's deadline still runs.
        this.opts.logger.warn(
          this.role === 'active'
            ? 'cannot renew the master lease; retrying'
            : 'cannot read the master lease; retrying',
          { error: String(err) },
        );
      })
      .finally(() => (this.round = null));
    return this.round;
  }

  /** A standby's round: take the lease if it is free or its holder is gone, else note its beat. */
  private async compete(): Promise<void> {
    let now = await this.leases.findOne({ _id: LEASE_ID });
    if (this.stopped) return;
    if (now === null) {
      // A new database (or a dropped one): the first insert wins; the others see the winner.
      const doc = this.mine(this.epoch + 1);
      const began = performance.now();
      try {
        await this.leases.insertOne(doc);
        return this.won(doc, began, null);
      } catch (err) {
        if ((err as { code?: number }).code !== 11000) throw err;
      }
      now = await this.leases.findOne({ _id: LEASE_ID });
      if (this.stopped || now === null) return;
    }
    const moved =
      !this.seen ||
      now.holder !== this.seen.holder ||
      now.epoch !== this.seen.epoch ||
      now.beat !== this.seen.beat ||
      !!now.released !== !!this.seen.released;
    if (moved) {
      if (this.seen?.holder !== now.holder && !now.released && now.holder !== this.holder)
        this.opts.logger.info('another master holds the lease: standing by', {
          active: describe(now),
          epoch: now.epoch,
        });
      this.seen = now;
      this.seenSince = performance.now();
    }
    this.epoch = Math.max(this.epoch, now.epoch ?? 0);
    // Still this master's own (it stepped down when the database stalled, and nobody took over):
    // taken back at once, with the next epoch, as any takeover (the state is rebuilt from the database).
    const own = now.holder === this.holder;
    const gone = now.released || own || this.goneOnThisMachine(now);
    if (!gone && performance.now() - this.seenSince < this.opts.leaseMs) return;
    await this.take(
      now,
      now.released
        ? 'released'
        : own
          ? 'this master held it'
          : gone
            ? 'its process is gone'
            : 'its lease ran out',
    );
  }

  /** Takes the lease from `from`, if it is still exactly what was read. */
  private async take(from: LeaseDoc, cause: string): Promise<void> {
    const epoch = (from.epoch ?? 0) + 1;
    const began = performance.now();
    const doc = await this.leases.findOneAndUpdate(
      { _id: LEASE_ID, holder: from.holder, beat: from.beat, ...epochIs(from.epoch) },
      { $set: { ...this.mine(epoch), beat: from.beat + 1 }, $unset: { released: '' } },
      { returnDocument: 'after' },
    );
    if (this.stopped || !doc || doc.holder !== this.holder) return;
    this.won(doc, began, { from, cause });
  }

  private won(doc: LeaseDoc, began: number, previous: { from: LeaseDoc; cause: string } | null): void {
    this.role = 'active';
    this.epoch = doc.epoch;
    this.beat = doc.beat;
    this.seen = doc;
    this.renewedAt = began;
    this.armDeadline();
    if (previous?.from.holder === this.holder)
      this.opts.logger.warn('took the lease back: no other master took it while this one stood down', {
        epoch: doc.epoch,
      });
    else if (previous && !previous.from.released)
      this.opts.logger.warn('took over from a master that is gone', {
        epoch: doc.epoch,
        cause: previous.cause,
        previous: describe(previous.from),
      });
    else this.opts.logger.info('elected the active master', { epoch: doc.epoch });
    this.emit('elected', doc.epoch);
  }

  /** An active master's round: one beat, whose filter holds this master and its epoch. */
  private async renew(): Promise<void> {
    if (!this.writable()) return this.stepDown('its renewals failed until the deadline', null);
    const began = performance.now();
    const doc = await this.leases.findOneAndUpdate(
      { _id: LEASE_ID, holder: this.holder, epoch: this.epoch },
      { $set: { beat: this.beat + 1 } },
      { returnDocument: 'after' },
    );
    if (this.stopped || this.role !== 'active') return;
    if (doc) {
      this.beat = doc.beat;
      // A renewal that began after the deadline does not bring the lease back: a standby may have
      // started counting before it landed.
      if (began - this.renewedAt < this.deadlineMs) {
        this.renewedAt = began;
        this.armDeadline();
      }
      return;
    }
    const now = await this.leases.findOne({ _id: LEASE_ID });
    if (this.stopped || this.role !== 'active') return;
    if (now === null && this.writable() && (await this.retake())) return;
    this.stepDown('another master took over', now);
  }

  /**
   * No lease at all: the database was dropped under this master. Takes it again, as a new master
   * would (an insert: of two, one wins), and reports `dropped`; false if another master was quicker.
   */
  private async retake(): Promise<boolean> {
    try {
      await this.leases.insertOne({ ...this.mine(this.epoch), beat: this.beat + 1 });
    } catch (err) {
      if ((err as { code?: number }).code === 11000) return false;
      throw err;
    }
    this.beat++;
    this.emit('dropped');
    return true;
  }

  /** Whether the lease document is still there (readiness asks, to see a dropped database at once). */
  async check(): Promise<void> {
    if (this.role !== 'active' || this.stopped) return;
    if ((await this.leases.findOne({ _id: LEASE_ID }, { projection: { _id: 1 } })) === null)
      await this.step();
  }

  private armDeadline(): void {
    if (this.deadline) clearTimeout(this.deadline);
    const left = this.deadlineMs - (performance.now() - this.renewedAt);
    this.deadline = setTimeout(
      () => {
        this.deadline = null;
        if (this.role !== 'active') return;
        // Timers count whole milliseconds and may fire a fraction early: armed again until it is due.
        if (this.writable()) this.armDeadline();
        else this.stepDown('its renewals failed until the deadline', null);
      },
      Math.max(1, Math.ceil(left)),
    );
    this.deadline.unref();
  }

  private stepDown(cause: string, holder: LeaseDoc | null): void {
    if (this.role !== 'active') return;
    this.role = 'standby';
    if (this.deadline) clearTimeout(this.deadline);
    this.deadline = null;
    this.seen = holder;
    this.seenSince = performance.now();
    this.opts.logger.error('this master is not the active one any more: stepping down to standby', {
      cause,
      epoch: this.epoch,
      ...(holder ? { active: describe(holder), activeEpoch: holder.epoch } : {}),
    });
    this.emit('lost', cause, holder);
  }

  private mine(epoch: number): LeaseDoc {
    return {
      _id: LEASE_ID,
      holder: this.holder,
      epoch,
      url: this.opts.url,
      hostname: os.hostname(),
      ...(MACHINE ? { machine: MACHINE } : {}),
      pid: process.pid,
      since: new Date(),
      beat: 0,
    };
  }

  /**
   * A holder on this machine, in this pid namespace, whose process is gone (a master killed, say):
   * no need to wait. Containers can share a host name and reuse pids, so the host name alone is not
   * enough: the boot id and the pid namespace must be this process's too.
   */
  private goneOnThisMachine(d: LeaseDoc): boolean {
    if (!MACHINE || d.machine !== MACHINE || d.hostname !== os.hostname() || d.pid === process.pid)
      return false;
    try {
      process.kill(d.pid, 0);
      return false;
    } catch (err) {
      return (err as NodeJS.ErrnoException).code === 'ESRCH';
    }
  }

  /**
   * Stops competing; an active master marks the lease free (after its last write), so a standby
   * takes over at once. Safe to call twice.
   */
  async release(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.deadline) clearTimeout(this.deadline);
    this.timer = this.deadline = null;
    await this.round?.catch(() => undefined);
    if (this.role !== 'active') return;
    this.role = 'standby';
    await this.leases
      .updateOne({ _id: LEASE_ID, holder: this.holder, epoch: this.epoch }, { $set: { released: true } })
      .catch((err: unknown) =>
        this.opts.logger.warn('could not release the master lease', { error: String(err) }),
      );
  }
}

/** This boot of this machine and this pid namespace, where Linux tells them; else null. */
const MACHINE = ((): string | null => {
  try {
    const boot = fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    return `${boot}/${fs.readlinkSync('/proc/self/ns/pid')}`;
  } catch {
    return null;
  }
})();

/** A lease written before epochs existed has none: it is epoch 0. */
function epochIs(epoch: number | undefined): Record<string, unknown> {
  return epoch === undefined ? { epoch: { $exists: false } } : { epoch };
}

export function describe(d: LeaseDoc): Record<string, unknown> {
  return { url: d.url, pid: d.pid, hostname: d.hostname, since: d.since };
}

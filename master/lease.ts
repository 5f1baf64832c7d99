/**
 * One master per database: the running master holds the `leases` document `_id: 'master'` and beats
 * on it (a counter, `beat`, raised every `leaseMs / 5`); a second master started on the same
 * database refuses to start, naming the running one (EMASTERHELD).
 *
 * A holder that stopped cleanly marked the lease released: the next master takes it at once. One that
 * died is recognised without comparing clocks: on the same machine its pid is gone; elsewhere, its
 * `beat` does not move for `leaseMs`, measured here. Every change is a single-document write whose
 * filter holds what was read (holder and beat), so of two masters starting at once exactly one
 * takes the lease; the other sees the winner beat and refuses.
 *
 * A master that finds at its next beat that the lease is not its own any more (it was paused longer
 * than `leaseMs` and another master took over) reports `lost`: the master stops at once. One that
 * finds no lease document at all knows the database (or its `leases`) was dropped under it: it takes
 * the lease again (unless another master was quicker: `lost`) and reports `dropped`, so that the
 * master can write back what its memory holds.
 */
import { EventEmitter } from 'node:events';
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import type { Collection } from 'mongoose';
import type { Logger } from '../common/logger';
import { TaskmasterError } from '../protocol/errors';

export const LEASE_ID = 'master';

export interface LeaseDoc {
  _id: string;
  /** Unique per master process and start: `<pid>@<hostname>/<random>`. */
  holder: string;
  url: string;
  hostname: string;
  pid: number;
  /** When the holder took the lease (its own clock; shown, never compared). */
  since: Date;
  /** Raised by the holder at every beat: a holder whose beat stands still for `leaseMs` is gone. */
  beat: number;
  /** The holder stopped cleanly: the lease is free. */
  released?: boolean;
}

export interface LeaseOptions {
  /** How long a silent holder keeps the lease. */
  leaseMs: number;
  url: string;
  logger: Logger;
}

export class MasterLease extends EventEmitter<{ lost: [holder: LeaseDoc | null]; dropped: [] }> {
  readonly holder = `${process.pid}@${os.hostname()}/${randomBytes(4).toString('hex')}`;
  private beat = 0;
  private timer: NodeJS.Timeout | null = null;
  private held = false;
  private stopped = false;
  /** The beat in flight: beats never overlap (two would both find the lease gone and race to take it). */
  private beating: Promise<void> | null = null;

  constructor(
    private readonly leases: Collection<LeaseDoc>,
    private readonly opts: LeaseOptions,
  ) {
    super();
  }

  /** Takes the lease, or throws EMASTERHELD naming the master that holds it. */
  async acquire(): Promise<void> {
    const mine = (): LeaseDoc => this.mine();
    try {
      await this.leases.insertOne(mine());
      return this.start();
    } catch (err) {
      if ((err as { code?: number }).code !== 11000) throw err;
    }
    let current = await this.leases.findOne({ _id: LEASE_ID });
    if (current && !current.released && !this.goneOnThisMachine(current)) {
      this.opts.logger.info('another master holds this database; checking that it is alive', {
        holder: describe(current),
        waitMs: this.opts.leaseMs,
      });
      current = await this.outlive(current);
    }
    if (current) {
      // Taken only if it is still exactly what we saw: another master starting now may be faster.
      const { modifiedCount } = await this.leases.updateOne(
        { _id: LEASE_ID, holder: current.holder, beat: current.beat },
        { $set: { ...mine(), beat: current.beat + 1 }, $unset: { released: '' } },
      );
      if (modifiedCount === 1) {
        this.beat = current.beat + 1;
        this.opts.logger.info('took over the database from a master that is gone', {
          previous: describe(current),
        });
        return this.start();
      }
    }
    const now = await this.leases.findOne({ _id: LEASE_ID });
    throw held(now ?? current);
  }

  private mine(): LeaseDoc {
    return {
      _id: LEASE_ID,
      holder: this.holder,
      url: this.opts.url,
      hostname: os.hostname(),
      pid: process.pid,
      since: new Date(),
      beat: 0,
    };
  }

  /**
   * Resolves with the lease as it was if its holder did not beat for `leaseMs` (it is gone); throws
   * EMASTERHELD as soon as it beats (it is alive).
   */
  private async outlive(seen: LeaseDoc): Promise<LeaseDoc | null> {
    const until = Date.now() + this.opts.leaseMs;
    const step = Math.max(20, Math.min(500, Math.floor(this.opts.leaseMs / 20)));
    for (;;) {
      await new Promise((r) => setTimeout(r, step));
      const now = await this.leases.findOne({ _id: LEASE_ID });
      if (!now || now.released) return now;
      if (now.holder !== seen.holder || now.beat !== seen.beat) throw held(now);
      if (Date.now() >= until) return now;
    }
  }

  /** A holder on this machine whose process is gone (a master killed, say): no need to wait. */
  private goneOnThisMachine(d: LeaseDoc): boolean {
    if (d.hostname !== os.hostname() || d.pid === process.pid) return false;
    try {
      process.kill(d.pid, 0);
      return false;
    } catch (err) {
      return (err as NodeJS.ErrnoException).code === 'ESRCH';
    }
  }

  private start(): void {
    this.held = true;
    const every = Math.max(10, Math.floor(this.opts.leaseMs / 5));
    const tick = () => {
      this.timer = null;
      void this.beatNow().finally(() => {
        if (this.held && !this.stopped) this.timer = setTimeout(tick, every).unref();
      });
    };
    this.timer = setTimeout(tick, every).unref();
  }

  /**
   * Whether the lease document is there at all (readiness asks, so a dropped database is seen at
   * once, not at the next beat); when it is not, beats now, which takes it again and reports it.
   */
  async check(): Promise<void> {
    if (!this.held || this.stopped) return;
    if ((await this.leases.findOne({ _id: LEASE_ID }, { projection: { _id: 1 } })) === null)
      await this.beatNow();
  }

  private beatNow(): Promise<void> {
    this.beating ??= this.renew().finally(() => (this.beating = null));
    return this.beating;
  }

  private async renew(): Promise<void> {
    try {
      const { matchedCount } = await this.leases.updateOne(
        { _id: LEASE_ID, holder: this.holder },
        { $set: { beat: this.beat + 1 } },
      );
      if (this.stopped) return;
      if (matchedCount === 1) {
        this.beat++;
        return;
      }
      const now = await this.leases.findOne({ _id: LEASE_ID });
      if (this.stopped) return;
      if (now === null && (await this.retake())) return;
      this.held = false;
      this.opts.logger.error('another master took over this database: this one stops', {
        holder: now ? describe(now) : null,
      });
      this.emit('lost', now);
    } catch (err) {
      // The database is away: the beat waits for it (a master that cannot write does nothing anyway).
      this.opts.logger.warn('cannot renew the master lease; retrying', { error: String(err) });
    }
  }

  /**
   * No lease at all: the database was dropped under this master. Takes it again, as a new master
   * would (an insert: of two, one wins), and reports `dropped`; false if another master was quicker.
   */
  private async retake(): Promise<boolean> {
    try {
      await this.leases.insertOne({ ...this.mine(), beat: this.beat + 1 });
    } catch (err) {
      if ((err as { code?: number }).code === 11000) return false;
      throw err;
    }
    this.beat++;
    this.emit('dropped');
    return true;
  }

  /** The URL clients reach this master at, once it listens (the port may have been 0 until then). */
  async advertise(url: string): Promise<void> {
    this.opts.url = url;
    await this.leases.updateOne({ _id: LEASE_ID, holder: this.holder }, { $set: { url } });
  }

  /** Stops beating and marks the lease free, so the next master starts at once. Safe to call twice. */
  async release(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (!this.held) return;
    this.held = false;
    await this.leases
      .updateOne({ _id: LEASE_ID, holder: this.holder }, { $set: { released: true } })
      .catch((err: unknown) =>
        this.opts.logger.warn('could not release the master lease', { error: String(err) }),
      );
  }
}

function describe(d: LeaseDoc): Record<string, unknown> {
  return { url: d.url, pid: d.pid, hostname: d.hostname, since: d.since };
}

function held(d: LeaseDoc | null): TaskmasterError {
  const who = d
    ? `the master at ${d.url} (pid ${d.pid} on ${d.hostname}, since ${d.since.toISOString()})`
    : 'another master';
  return new TaskmasterError(
    'EMASTERHELD',
    `${who} is running on this database; one master per database. Stop it first, or give this one ` +
      'another database (--db or MONGO_URL)',
    d ? describe(d) : undefined,
  );
}

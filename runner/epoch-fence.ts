/**
 * The runner's side of fencing: the highest master epoch it has seen (in a hello reply, an
 * assignment or a cancel). Each takeover raises the epoch, so a message carrying a lower one comes
 * from a master that has been replaced and does not know it yet (paused, partitioned): the runner
 * must not act on it, or two masters would both be giving it work.
 *
 * A message without an epoch (a master without leases) is let through: there is nothing to compare.
 * The highest epoch is kept for the runner's life, across reconnects and masters.
 */
export type EpochCheck = { ok: true } | { ok: false; epoch: number; seen: number };

export class EpochFence {
  private seen: number | undefined;

  /** The highest epoch seen, if any. */
  get highest(): number | undefined {
    return this.seen;
  }

  /** Whether a message carrying `epoch` may be acted on; a higher epoch becomes the one to compare with. */
  check(epoch: number | undefined): EpochCheck {
    if (epoch === undefined) return { ok: true };
    if (this.seen !== undefined && epoch < this.seen) return { ok: false, epoch, seen: this.seen };
    this.seen = epoch;
    return { ok: true };
  }
}

/**
 * Long loops cut into slices of about {@link SLICE_MS} of the event loop each, with the loop free
 * between them (setImmediate: timers, sockets and I/O callbacks run before the next slice), so an
 * operation over tens of thousands of items does not hold up every other socket and `/health`.
 *
 * A slice is measured in elapsed time, not in items: the same code stays under its budget on a fast
 * machine and on a loaded one (where the process is descheduled mid-slice), and items of any cost
 * are handled. The total work is unchanged (each item once), so an operation stays linear; a pause
 * costs one turn of the loop.
 *
 *   const slice = new TimeSlice();
 *   for (const x of items) {
 *     work(x);
 *     if (slice.due()) await slice.pause();
 *   }
 */

/** Time one slice may take before the loop gets a turn (ms). */
export const SLICE_MS = 15;

export class TimeSlice {
  private start = performance.now();

  constructor(private readonly budgetMs = SLICE_MS) {}

  /** Whether this slice has used its time (the caller then awaits `pause()`). */
  due(): boolean {
    return performance.now() - this.start >= this.budgetMs;
  }

  /** Lets the event loop run, then starts a new slice. */
  async pause(): Promise<void> {
    await new Promise<void>((resolve) => setImmediate(resolve));
    this.start = performance.now();
  }

  /** `pause()` when due. */
  async maybePause(): Promise<void> {
    if (this.due()) await this.pause();
  }

  /**
   * Calls `fn` on successive pieces of `items` (each a slice), pausing between them. Piece sizes
   * adapt to the time the previous piece took, so each fills about one budget; `fn` handles a piece
   * at once (an operation that has no per-item loop of its own to pause in).
   */
  async pieces<T>(items: readonly T[], fn: (piece: T[]) => void, first = 64): Promise<void> {
    let size = first;
    for (let i = 0; i < items.length;) {
      const began = performance.now();
      const piece = items.slice(i, i + size);
      fn(piece);
      i += piece.length;
      const took = performance.now() - began;
      // Aim at half the budget: the next piece may cost more per item than this one did.
      size = Math.max(
        1,
        Math.min(size * 4, Math.floor((piece.length * this.budgetMs) / 2 / Math.max(took, 0.01))),
      );
      if (i < items.length && this.due()) await this.pause();
    }
  }
}

/**
 * Reads of `tasks` that may scan: a list with filters, a batch not in memory, its graph, its
 * failures. On FerretDB only `_id` look-ups use an index, so each of these reads every document, on
 * the same server (and cores) that makes adds and outcomes durable. A client looping over unknown
 * batches or text filters would take the database from the write path; at most `limit` such reads
 * run at once, and one beyond is refused at once (503 EBUSY, naming the limit), never queued, so
 * nothing piles up in the master either. Reads by `_id` (one task) are not scans and do not count.
 */
import { HttpError } from './server';

export class ScanGate {
  private running = 0;
  /** Scans refused so far (status). */
  refused = 0;

  constructor(readonly limit: number) {}

  async run<T>(what: string, read: () => Promise<T>): Promise<T> {
    if (this.running >= this.limit) {
      this.refused++;
      throw new HttpError(
        503,
        'EBUSY',
        `${what}: ${this.running} reads that scan the tasks are running already, the most at once (maxScans ${this.limit}); retry in a moment`,
        { limit: this.limit, retryAfterMs: 500 },
      );
    }
    this.running++;
    try {
      return await read();
    } finally {
      this.running--;
    }
  }

  get active(): number {
    return this.running;
  }
}

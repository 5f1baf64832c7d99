/**
 * Results waiting for the master's acknowledgement. A result leaves the outbox only when an ack says
 * it was written; until then it survives disconnects and is sent again after the next hello. Sending
 * a result twice is harmless (the master fences on the attempt number); losing one costs a rerun.
 *
 * Batching follows proletariat's ANSWER_THRESHOLD: send once `threshold` results are waiting, or
 * after `delayMs` for a partial batch.
 *
 * A result may also carry its attempt's start (`carryStarted`): a task over within the tick it began
 * is reported in one message, not a `task:started` and then a `task:results`.
 */
import { EventEmitter } from 'node:events';
import { backoffDelay } from '../common/backoff';
import type { Logger } from '../common/logger';
import type { AttemptRef, ResultsAck } from '../protocol/events';
import type { AttemptResult } from '../protocol/schemas';

export interface OutboxOptions {
  threshold: number;
  delayMs: number;
  /** Largest number of results in one `task:results` message. */
  maxBatch?: number;
  /** Largest `task:results` message in bytes (the master's message limit); a batch is cut below it. */
  maxBytes?: () => number;
  logger: Logger;
  /** Sends one batch; `started` lists the attempts of the batch whose start it also reports. */
  send(results: AttemptResult[], started: AttemptRef[]): Promise<ResultsAck>;
}

export class ResultOutbox extends EventEmitter<{ delivered: [AttemptResult[]]; empty: [] }> {
  /** Every result not yet acknowledged, by attempt key. */
  private pending = new Map<string, AttemptResult>();
  /** Keys of pending results that are not in flight. */
  private unsent = new Set<string>();
  /** Keys of pending results that also report their attempt's start (`carryStarted`). */
  private readonly startedWith = new Set<string>();
  private online = false;
  /** Bumped on every disconnect: a failure reported by an older connection's emit changes nothing. */
  private generation = 0;
  private timer: NodeJS.Timeout | null = null;
  private immediate: NodeJS.Immediate | null = null;
  private failures = 0;
  private readonly maxBatch: number;

  constructor(private readonly opts: OutboxOptions) {
    super();
    this.maxBatch = opts.maxBatch ?? 500;
  }

  get size(): number {
    return this.pending.size;
  }

  has(key: string): boolean {
    return this.pending.has(key);
  }

  keys(): string[] {
    return [...this.pending.keys()];
  }

  push(key: string, result: AttemptResult): void {
    this.pending.set(key, result);
    this.unsent.add(key);
    // At the threshold, results that come in the same tick (several children answering at once)
    // still go together: one message, one database write on the master.
    if (this.unsent.size >= this.opts.threshold) this.flushSoon();
    else this.schedule(this.opts.delayMs);
  }

  /**
   * Whether the result of `key` is waiting to be sent: if so, it carries the attempt's start too, and
   * the caller need not send a `task:started` for it.
   */
  carryStarted(key: string): boolean {
    if (!this.unsent.has(key)) return false;
    this.startedWith.add(key);
    return true;
  }

  /** The master already requeued these attempts: their results would only be refused as stale. */
  drop(keys: Iterable<string>): void {
    for (const k of keys) {
      this.pending.delete(k);
      this.unsent.delete(k);
      this.startedWith.delete(k);
    }
    if (this.pending.size === 0) this.emit('empty');
  }

  setOnline(online: boolean): void {
    this.online = online;
    if (online) return this.flush();
    // Acks of the lost connection may never come: everything in flight goes out again next time.
    this.generation++;
    for (const k of this.pending.keys()) this.unsent.add(k);
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  /** Resolves once every result has been acknowledged. */
  idle(): Promise<void> {
    if (this.pending.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.once('empty', resolve));
  }

  close(): void {
    this.online = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    while (this.online && this.unsent.size > 0) {
      const batch: [string, AttemptResult][] = [];
      const maxBytes = this.opts.maxBytes?.() ?? Infinity;
      let bytes = 0;
      for (const k of this.unsent) {
        const r = this.pending.get(k);
        if (r) {
          // A start it carries is in the same message: counted, so the batch still fits.
          const size = jsonSize(r) + (this.startedWith.has(k) ? refSize(r) : 0);
          // A lone result always goes (the runner already capped it); a batch stops short of the limit.
          if (batch.length > 0 && bytes + size > maxBytes) break;
          batch.push([k, r]);
          bytes += size;
        }
        this.unsent.delete(k);
        if (batch.length >= this.maxBatch) break;
      }
      if (batch.length) this.sendBatch(batch);
    }
  }

  private flushSoon(): void {
    if (this.immediate) return;
    this.immediate = setImmediate(() => {
      this.immediate = null;
      this.flush();
    });
  }

  private schedule(ms: number): void {
    if (!this.timer && this.online) this.timer = setTimeout(() => this.flush(), ms);
  }

  private sendBatch(batch: [string, AttemptResult][]): void {
    const gen = this.generation;
    const retry = (why: string) => {
      if (gen !== this.generation) return;
      for (const [k, r] of batch) if (this.pending.get(k) === r) this.unsent.add(k);
      const delay = backoffDelay(this.failures++, { base: 200, cap: 5000 });
      this.opts.logger.warn('results not acknowledged; retrying', {
        results: batch.length,
        why,
        retryInMs: delay,
      });
      this.schedule(delay);
    };
    const results = batch.map(([, r]) => r);
    const started = batch
      .filter(([k]) => this.startedWith.has(k))
      .map(([, r]) => ({ id: r.id, attempt: r.attempt }));
    this.opts.send(results, started).then(
      (ack) => {
        if (!ack.ok) return retry('the master refused the batch');
        this.failures = 0;
        // Only the very result that was sent leaves: a newer one under the same key stays.
        const delivered: AttemptResult[] = [];
        for (const [k, r] of batch) {
          if (this.pending.get(k) !== r) continue;
          this.pending.delete(k);
          this.unsent.delete(k);
          this.startedWith.delete(k);
          delivered.push(r);
        }
        if (ack.stale > 0) this.opts.logger.info('master ignored stale results', { stale: ack.stale });
        if (delivered.length) this.emit('delivered', delivered);
        if (this.pending.size === 0) this.emit('empty');
      },
      (err: unknown) => retry(err instanceof Error ? err.message : String(err)),
    );
  }
}

/** The bytes of the attempt's entry in `started`, with its comma. */
function refSize(r: AttemptResult): number {
  return Buffer.byteLength(JSON.stringify({ id: r.id, attempt: r.attempt })) + 1;
}

function jsonSize(r: AttemptResult): number {
  try {
    return Buffer.byteLength(JSON.stringify(r));
  } catch {
    return 0;
  }
}

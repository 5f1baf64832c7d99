/**
 * Log lines a client can cause (a stale result, a refused message, a reconnect, a refused handshake)
 * are rate-limited per cause and per client, so no client writes the log at the rate it sends: each
 * key (e.g. `stale:<runner id>`) logs at most `burst` lines per `windowMs`; the lines beyond are
 * counted, and one line per key and window says how many were left out.
 *
 *   limitLog(log, 'warn', `refused:${socket.id}`, 'malformed payload refused', { ... });
 *
 * Memory is bounded: at most `maxKeys` keys are tracked (the oldest is summarised and forgotten
 * first); a key idle for a whole window is forgotten.
 */
import type { Logger } from './logger';

type Level = 'error' | 'warn' | 'info' | 'debug';

interface Entry {
  log: Logger;
  level: Level;
  message: string;
  /** Start of the key's current window. */
  since: number;
  lines: number;
  suppressed: number;
}

export interface LogLimitOptions {
  /** Lines per key and window. Default 5. */
  burst?: number;
  /** Default 10000 ms. */
  windowMs?: number;
  /** Keys tracked at once. Default 10000. */
  maxKeys?: number;
}

export class LogLimiter {
  private readonly entries = new Map<string, Entry>();
  private timer: NodeJS.Timeout | null = null;
  private readonly burst: number;
  private readonly windowMs: number;
  private readonly maxKeys: number;

  constructor(opts: LogLimitOptions = {}) {
    this.burst = opts.burst ?? 5;
    this.windowMs = opts.windowMs ?? 10_000;
    this.maxKeys = opts.maxKeys ?? 10_000;
  }

  /** Logs the line unless its key already logged `burst` lines in this window; then counts it. */
  line(log: Logger, level: Level, key: string, message: string, meta: Record<string, unknown> = {}): void {
    const now = Date.now();
    let e = this.entries.get(key);
    if (e && now - e.since >= this.windowMs) {
      this.summarise(key, e);
      e = undefined;
    }
    if (!e) {
      e = { log, level, message, since: now, lines: 0, suppressed: 0 };
      this.entries.set(key, e);
      if (this.entries.size > this.maxKeys) this.evictOldest();
      this.sweepLater();
    }
    if (e.lines < this.burst) {
      e.lines++;
      log[level](message, meta);
    } else {
      e.suppressed++;
    }
  }

  /** Says what each key left out so far; forgets every key. */
  flush(): void {
    for (const [key, e] of this.entries) this.summarise(key, e);
    this.entries.clear();
  }

  private summarise(key: string, e: Entry): void {
    this.entries.delete(key);
    if (e.suppressed === 0) return;
    e.log[e.level](`${e.message} (and ${e.suppressed} more like it, not logged)`, {
      limitKey: key,
      suppressed: e.suppressed,
      windowMs: this.windowMs,
    });
  }

  private evictOldest(): void {
    const [key, e] = this.entries.entries().next().value as [string, Entry];
    this.summarise(key, e);
  }

  /** One timer for all keys: windows that ended are summarised and their keys forgotten. */
  private sweepLater(): void {
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      const now = Date.now();
      for (const [key, e] of this.entries) if (now - e.since >= this.windowMs) this.summarise(key, e);
      if (this.entries.size > 0) this.sweepLater();
    }, this.windowMs);
    this.timer.unref();
  }
}

/** The process's limiter: keys carry the client (socket or runner id), so masters in one process share it. */
export const logLimiter = new LogLimiter();

/** `logLimiter.line`: a log line a client can cause, rate-limited per `key`. */
export function limitLog(
  log: Logger,
  level: Level,
  key: string,
  message: string,
  meta: Record<string, unknown> = {},
): void {
  logLimiter.line(log, level, key, message, meta);
}

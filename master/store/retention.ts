/**
 * Retention and purge: final tasks are removed after `retainMs` (or beyond the newest `retainCount`),
 * in the background, in small chunks with a pause between them, so the hot path barely notices.
 * Only final tasks are ever removed; a task id can be used again once its task is gone.
 *
 * Each pass looks for the oldest final tasks (`{ state, updated }` index on MongoDB; on FerretDB a scan
 * that stops after one chunk of matches, and old tasks come first in its storage order), deletes
 * them by `_id`, and tells the scheduler to forget their outcomes.
 */
import type { Logger } from '../../common/logger';
import { FINAL_STATES, type TaskState } from '../../protocol/states';
import type { Store } from './store';

export interface RetentionOptions {
  /** Remove final tasks this long after they finished; null keeps them. */
  retainMs: number | null;
  /** Keep at most this many final tasks (the newest); null: no limit. */
  retainCount: number | null;
  /** Time between passes. Default: a tenth of `retainMs`, between 1 s and 10 minutes. */
  intervalMs?: number;
  /** Tasks deleted per command. Default 500. */
  chunk?: number;
  logger: Logger;
}

export interface PurgeFilter {
  batch?: string;
  /** One final state; default all three. */
  state?: 'done' | 'failed' | 'cancelled';
  /** Only tasks that became final before this time (epoch ms). */
  before?: number;
}

export class Retention {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<number> | null = null;
  private stopped = false;
  /** Tasks removed so far by retention and purge. */
  removed = 0;

  constructor(
    private readonly store: Store,
    private readonly opts: RetentionOptions,
    /** The scheduler forgets these ids (they may be used again); returns ids it still runs, to keep. */
    private readonly forget: (ids: string[]) => void,
    private readonly isLive: (id: string) => boolean,
  ) {}

  start(): void {
    if (this.opts.retainMs === null && this.opts.retainCount === null) return;
    const every =
      this.opts.intervalMs ??
      Math.min(600_000, Math.max(1000, Math.round((this.opts.retainMs ?? 6_000_000) / 10)));
    const tick = () => {
      if (this.stopped) return;
      void this.pass()
        .catch((err: unknown) => this.opts.logger.warn('retention pass failed', { error: String(err) }))
        .finally(() => {
          if (this.stopped) return;
          this.timer = setTimeout(tick, every);
          this.timer.unref();
        });
    };
    this.timer = setTimeout(tick, Math.min(every, 5000));
    this.timer.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.running?.catch(() => 0);
  }

  /** One retention pass: by age, then by count. Returns how many tasks it removed. */
  async pass(): Promise<number> {
    let n = 0;
    if (this.opts.retainMs !== null) n += await this.purge({ before: Date.now() - this.opts.retainMs });
    if (this.opts.retainCount !== null) {
      const finals = await this.store.tasks.countDocuments({ state: { $in: [...FINAL_STATES] } });
      let excess = finals - this.opts.retainCount;
      // A task final in `tasks` but live again in memory (retried, its new state not folded yet) is
      // not final: it is skipped, and counts as one fewer final task.
      const skip = new Set<string>();
      while (excess > 0 && !this.stopped) {
        const q = { state: { $in: [...FINAL_STATES] } };
        const found = (
          await this.store.tasks
            .find(skip.size > 0 ? { ...q, _id: { $nin: [...skip] } } : q, { projection: { _id: 1 } })
            .sort({ updated: 1 })
            .limit(Math.min(excess, this.opts.chunk ?? 500))
            .toArray()
        ).map((d) => d._id);
        if (found.length === 0) break;
        for (const id of found) if (this.isLive(id)) skip.add(id);
        n += await this.remove(found.filter((id) => !this.isLive(id)));
        excess -= found.length;
        await breathe();
      }
    }
    if (n > 0) this.opts.logger.info('retention removed final tasks', { removed: n });
    return n;
  }

  /** Removes final tasks matching `filter`; resolves to how many. Passes never overlap. */
  purge(filter: PurgeFilter): Promise<number> {
    const prev = this.running ?? Promise.resolve(0);
    const run = prev.catch(() => 0).then(() => this.purgeNow(filter));
    this.running = run;
    return run;
  }

  private async purgeNow(filter: PurgeFilter): Promise<number> {
    const states: TaskState[] = filter.state ? [filter.state] : [...FINAL_STATES];
    const q: Record<string, unknown> = { state: { $in: states } };
    if (filter.batch !== undefined) q.batch = filter.batch;
    if (filter.before !== undefined) q.updated = { $lt: filter.before };
    let n = 0;
    const skip = new Set<string>();
    for (;;) {
      const found = (
        await this.store.tasks
          .find(skip.size > 0 ? { ...q, _id: { $nin: [...skip] } } : q, { projection: { _id: 1 } })
          .limit(this.opts.chunk ?? 500)
          .toArray()
      ).map((d) => d._id);
      if (found.length === 0) break;
      const ids = found.filter((id) => !this.isLive(id));
      for (const id of found) if (this.isLive(id)) skip.add(id);
      n += await this.remove(ids);
      if (found.length < (this.opts.chunk ?? 500) || this.stopped) break;
      await breathe();
    }
    return n;
  }

  private async remove(ids: string[]): Promise<number> {
    if (ids.length === 0) return 0;
    const r = await this.store.tasks.deleteMany({ _id: { $in: ids }, state: { $in: [...FINAL_STATES] } });
    this.forget(ids);
    this.removed += r.deletedCount;
    return r.deletedCount;
  }
}

/** A short pause between chunks, so the writer and the folder get the database in between. */
function breathe(): Promise<void> {
  return new Promise((r) => setTimeout(r, 20));
}

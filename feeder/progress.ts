/**
 * Progress of a batch on stderr for `taskmaster feed --wait` and the demo: a cli-progress bar on a
 * terminal; otherwise (a log file, CI) a plain line every few seconds, and only when something changed.
 *
 * Progress is a fraction from 0 to 1, as tasks report it (`this.progress(0.5)`): a finished task
 * counts 1, a running one what it last reported (clamped to 0–1), so the bar moves during long tasks.
 */
import cliProgress from 'cli-progress';
import type { TaskOutcome } from '../protocol/schemas';

export type Counts = Record<TaskOutcome['state'], number>;

export interface BatchProgress {
  readonly counts: Counts;
  /** Counts one final outcome. */
  add(outcome: TaskOutcome): void;
  /** Records a running task's own progress, a fraction from 0 to 1. */
  task(id: string, fraction: number): void;
  /** The batch's progress, from 0 to 1. */
  fraction(): number;
  /** Draws the last state and stops redrawing. Safe to call twice. */
  stop(): void;
}

export interface ProgressOptions {
  /** Milliseconds between plain lines when the stream is not a terminal. Default 2000 ms. */
  intervalMs?: number;
}

export function batchProgress(
  total: number,
  stream: NodeJS.WritableStream & { isTTY?: boolean },
  opts: ProgressOptions = {},
): BatchProgress {
  const counts: Counts = { done: 0, failed: 0, cancelled: 0 };
  const running = new Map<string, number>();
  const ended = new Set<string>();
  const finished = () => counts.done + counts.failed + counts.cancelled;
  const fraction = () => {
    if (total === 0) return 1;
    let partial = 0;
    for (const f of running.values()) partial += f;
    return Math.min(1, (finished() + partial) / total);
  };
  const percent = () => `${Math.floor(fraction() * 100)}%`;
  let stopped = false;
  let redraw = () => {};
  const state = {
    counts,
    fraction,
    add(o: TaskOutcome) {
      counts[o.state]++;
      running.delete(o.id);
      ended.add(o.id);
      redraw();
    },
    task(id: string, f: number) {
      if (ended.has(id) || !Number.isFinite(f)) return;
      running.set(id, Math.min(1, Math.max(0, f)));
      redraw();
    },
  };

  if (stream.isTTY) {
    const bar = new cliProgress.SingleBar(
      {
        stream,
        format:
          ' {bar} {percent} | {finished}/{total} finished | done {done} | failed {failed} | cancelled {cancelled} | {duration_formatted}',
        // Ctrl-C must not leave the terminal without a cursor.
        hideCursor: false,
        fps: 10,
      },
      cliProgress.Presets.shades_classic,
    );
    // The bar counts thousandths of the batch, so running tasks' fractions move it too.
    const payload = () => ({ ...counts, finished: finished(), percent: percent(), total });
    bar.start(1000, 0, payload());
    redraw = () => {
      if (!stopped) bar.update(Math.round(fraction() * 1000), payload());
    };
    return {
      ...state,
      stop() {
        if (stopped) return;
        redraw();
        stopped = true;
        bar.stop();
      },
    };
  }

  const started = Date.now();
  let last = '';
  const print = () => {
    const line = `${finished()}/${total} finished, ${percent()}: done ${counts.done}, failed ${counts.failed}, cancelled ${counts.cancelled}`;
    if (line === last) return;
    last = line;
    stream.write(`${line} (${((Date.now() - started) / 1000).toFixed(1)} s)\n`);
  };
  const timer = setInterval(print, opts.intervalMs ?? 2000);
  timer.unref();
  print();
  return {
    ...state,
    stop() {
      if (stopped) return;
      stopped = true;
      clearInterval(timer);
      print();
    },
  };
}

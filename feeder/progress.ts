/**
 * Progress of a batch on stderr for `taskmaster feed --wait` and the demo: a cli-progress bar on a
 * terminal; otherwise (a log file, CI) a plain line every few seconds, and only when something changed.
 */
import cliProgress from 'cli-progress';
import type { TaskOutcome } from '../protocol/schemas';

export type Counts = Record<TaskOutcome['state'], number>;

export interface BatchProgress {
  readonly counts: Counts;
  /** Counts one final outcome. */
  add(outcome: TaskOutcome): void;
  /** Draws the last state and stops redrawing. Safe to call twice. */
  stop(): void;
}

export interface ProgressOptions {
  /** Seconds between plain lines when the stream is not a terminal. Default 2000 ms. */
  intervalMs?: number;
}

export function batchProgress(
  total: number,
  stream: NodeJS.WritableStream & { isTTY?: boolean },
  opts: ProgressOptions = {},
): BatchProgress {
  const counts: Counts = { done: 0, failed: 0, cancelled: 0 };
  const finished = () => counts.done + counts.failed + counts.cancelled;
  let stopped = false;

  if (stream.isTTY) {
    const bar = new cliProgress.SingleBar(
      {
        stream,
        format:
          ' {bar} {value}/{total} | done {done} | failed {failed} | cancelled {cancelled} | {duration_formatted}',
        // Ctrl-C must not leave the terminal without a cursor.
        hideCursor: false,
        fps: 10,
      },
      cliProgress.Presets.shades_classic,
    );
    bar.start(total, 0, counts);
    return {
      counts,
      add(o) {
        counts[o.state]++;
        if (!stopped) bar.update(finished(), counts);
      },
      stop() {
        if (stopped) return;
        stopped = true;
        bar.update(finished(), counts);
        bar.stop();
      },
    };
  }

  const started = Date.now();
  let last = '';
  const print = () => {
    const line = `${finished()}/${total} finished: done ${counts.done}, failed ${counts.failed}, cancelled ${counts.cancelled}`;
    if (line === last) return;
    last = line;
    stream.write(`${line} (${((Date.now() - started) / 1000).toFixed(1)} s)\n`);
  };
  const timer = setInterval(print, opts.intervalMs ?? 2000);
  timer.unref();
  print();
  return {
    counts,
    add(o) {
      counts[o.state]++;
    },
    stop() {
      if (stopped) return;
      stopped = true;
      clearInterval(timer);
      print();
    },
  };
}

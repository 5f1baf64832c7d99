/**
 * `taskmaster feed FILE`: adds a batch and prints what was stored; with `--wait`, shows progress on
 * stderr, then a summary on stderr and the results on stdout (`--json`: one JSON array of outcomes).
 *
 * Exit codes: 0 every task done (or, without --wait, the batch stored); 1 a task failed or was
 * cancelled, or the master could not be reached; 2 the file or the batch is invalid (nothing stored).
 */
import type { Logger } from '../common/logger';
import { TaskmasterError } from '../protocol/errors';
import type { TaskInput, TaskOutcome } from '../protocol/schemas';
import { readBatch, type Batch } from './batch-file';
import { Feeder, issuesOf } from './feeder';
import type { FeederOptions } from './options';
import { batchProgress } from './progress';

export interface FeedOptions {
  /** A file, or `-` for stdin. */
  file: string;
  feeder: FeederOptions;
  batch?: string;
  wait?: boolean;
  json?: boolean;
  logger?: Logger;
  out?: NodeJS.WritableStream;
  err?: NodeJS.WritableStream & { isTTY?: boolean };
}

export async function feed(opts: FeedOptions): Promise<number> {
  const out = opts.out ?? process.stdout;
  const err = opts.err ?? process.stderr;
  const say = (s: string) => err.write(`${s}\n`);

  let batch: Batch;
  try {
    batch = await readBatch(opts.file);
  } catch (e) {
    say(`taskmaster feed: ${(e as Error).message}`);
    return 2;
  }

  const feeder = new Feeder({ ...opts.feeder, logger: opts.logger });
  const started = Date.now();
  try {
    const added = await feeder.addBatch(batch.tasks as TaskInput[], {
      batch: opts.batch,
      onQueueFull: ({ waitMs, attempt }) =>
        say(`the master's queue is full; retry ${attempt} in ${(waitMs / 1000).toFixed(1)} s`),
    });
    const n = added.tasks.length;
    if (!opts.wait) {
      if (opts.json) out.write(`${JSON.stringify(added)}\n`);
      else {
        out.write(`stored ${n} task${n === 1 ? '' : 's'} in batch ${added.batch}\n`);
        for (const t of added.tasks) out.write(`${t.id}\n`);
      }
      return 0;
    }

    say(`stored ${n} task${n === 1 ? '' : 's'} in batch ${added.batch}; waiting for the outcomes`);
    const progress = batchProgress(n, err);
    let outcomes: TaskOutcome[];
    try {
      outcomes = await Promise.all(
        added.tasks.map((t) =>
          feeder.outcome(t.id).then((o) => {
            progress.add(o);
            return o;
          }),
        ),
      );
    } finally {
      progress.stop();
    }
    summarize(outcomes, Date.now() - started, say);
    if (opts.json) out.write(`${JSON.stringify(outcomes)}\n`);
    else for (const o of outcomes) out.write(`${resultLine(o)}\n`);
    return outcomes.every((o) => o.state === 'done') ? 0 : 1;
  } catch (e) {
    if (e instanceof TaskmasterError && e.code === 'EVALIDATION') {
      const issues = issuesOf(e.details);
      if (issues.length === 0) say(`taskmaster feed: the master refused the batch: ${e.message}`);
      else {
        say(
          `taskmaster feed: the master refused the batch, nothing was stored (${issues.length} issue${issues.length === 1 ? '' : 's'}):`,
        );
        for (const i of issues) say(`  ${i.path}: ${i.message}${lineOf(i.path, batch, opts.file)}`);
      }
      return 2;
    }
    const code = e instanceof TaskmasterError ? `${e.code}: ` : '';
    say(`taskmaster feed: ${code}${(e as Error).message}`);
    return 1;
  } finally {
    await feeder.close();
  }
}

function summarize(outcomes: TaskOutcome[], ms: number, say: (s: string) => void): void {
  const count = (s: TaskOutcome['state']) => outcomes.filter((o) => o.state === s).length;
  say(
    `${outcomes.length} tasks in ${(ms / 1000).toFixed(1)} s: ${count('done')} done, ${count('failed')} failed, ${count('cancelled')} cancelled`,
  );
  const bad = outcomes.filter((o) => o.state !== 'done');
  if (bad.length === 0) return;
  say(bad.some((o) => o.state === 'failed') ? 'not done:' : 'cancelled:');
  for (const o of bad) say(`  ${o.id}  ${o.state}  ${o.error?.code ?? '-'}  ${o.error?.message ?? ''}`);
}

/** One result per line: `id  done  <result as JSON>` or `id  failed  CODE message`. */
export function resultLine(o: TaskOutcome): string {
  if (o.state === 'done') return `${o.id}\tdone\t${o.result === undefined ? '' : JSON.stringify(o.result)}`;
  return `${o.id}\t${o.state}\t${o.error?.code ?? ''}\t${o.error?.message ?? ''}`;
}

/** ` (batch.ndjson:7)` for an issue about `tasks[i]` of an NDJSON file. */
function lineOf(path: string, batch: Batch, file: string): string {
  const m = /^tasks\[(\d+)\]/.exec(path);
  const line = m && batch.lines ? batch.lines[Number(m[1])] : undefined;
  return line === undefined ? '' : ` (${file === '-' ? 'stdin' : file}:${line})`;
}

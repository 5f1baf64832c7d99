/**
 * `taskmaster feed FILE`: adds a batch and prints what was stored; with `--wait`, shows progress on
 * stderr, then the results on stdout (`--json`: one JSON array of outcomes; `--out FILE`: into a file;
 * `--quiet`: none), and ends with a summary on stderr, so the last lines on a terminal say how it went.
 *
 * Ids in a batch file are local to it: they are stored as `<batch>/<id>`, dependencies on ids of the
 * same file are rewritten to match, and results are printed under the file's ids. So one file can be
 * fed any number of times; each feed is its own batch (named after the file unless `--batch` is given).
 * A dependency on an id the file does not hold names a stored task and is left as it is.
 *
 * A task whose dedup key is taken is not stored: the output says `tasks[i]  deduplicated → <id>`
 * (with `--wait` on stderr), and its result is that task's.
 *
 * Exit codes: 0 every task done (or, without --wait, the batch stored); 1 a task failed or was
 * cancelled, or the master could not be reached; 2 the file or the batch is invalid (nothing stored).
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from '../common/logger';
import { TaskmasterError } from '../protocol/errors';
import type { TaskInput, TaskOutcome, TaskRef } from '../protocol/schemas';
import { messageRoom } from '../protocol/limits';
import { readBatch, type Batch } from './batch-file';
import { indexFile, type BatchIndex } from './batch-index';
import { addStreamed } from './feed-stream';
import { Feeder, issuesOf } from './feeder';
import { FEEDER_DEFAULTS, type FeederOptions } from './options';
import { batchProgress } from './progress';

export interface FeedOptions {
  /** A file, or `-` for stdin. */
  file: string;
  feeder: FeederOptions;
  /** Batch name. Default: the file's name and a time stamp, e.g. `example-batch-m3k9x2a7`. */
  batch?: string;
  /**
   * A task whose id is already stored (the same `--batch` fed again): refuse the batch (`error`, the
   * default) or skip the task and wait for the stored one's outcome (`skip`).
   */
  onExisting?: 'error' | 'skip';
  wait?: boolean;
  json?: boolean;
  /** With `wait`: write the results to this file instead of stdout. */
  outFile?: string;
  /** With `wait`: print no results, only progress and the summary. */
  quiet?: boolean;
  logger?: Logger;
  out?: NodeJS.WritableStream;
  err?: NodeJS.WritableStream & { isTTY?: boolean };
}

export async function feed(opts: FeedOptions): Promise<number> {
  const err = opts.err ?? process.stderr;
  const say = (s: string) => err.write(`${s}\n`);

  const maxMessageBytes = opts.feeder.maxMessageBytes ?? FEEDER_DEFAULTS.maxMessageBytes;
  // A file larger than one message is sent as it is read again (feeder/feed-stream.ts), NDJSON only.
  let batch: Batch | undefined;
  let index: BatchIndex | null = null;
  try {
    if (opts.file !== '-' && (await fileSize(opts.file)) > messageRoom(maxMessageBytes))
      index = await indexFile(opts.file);
    if (!index) batch = await readBatch(opts.file);
  } catch (e) {
    say(`taskmaster feed: ${(e as Error).message}`);
    return 2;
  }
  const name = opts.batch ?? batchName(opts.file);
  const scoped = batch ? scopeIds(batch.tasks, name) : undefined;
  const fileIds = index ? new Set(index.ids) : undefined;
  const prefix = `${name}/`;
  const local = (id: string) =>
    scoped?.local.get(id) ??
    (id.startsWith(prefix) && fileIds?.has(id.slice(prefix.length)) ? id.slice(prefix.length) : id);
  const unscope = (text: string) => text.split(prefix).join('');
  const lines = batch?.lines ?? index?.lines;

  const feeder = new Feeder({ ...opts.feeder, logger: opts.logger });
  const started = Date.now();
  // E.g. tasks stored whose module no connected runner has: a mistyped name shows before any wait.
  feeder.on('warning', (w) => say(`warning: ${unscope(w)}`));
  try {
    const addOpts = {
      batch: name,
      onExisting: opts.onExisting,
      onQueueFull: ({ waitMs, attempt }: { waitMs: number; attempt: number }) =>
        say(`the master's queue is full; retry ${attempt} in ${(waitMs / 1000).toFixed(1)} s`),
    };
    const added = index
      ? await addStreamed(feeder, opts.file, index, name, maxMessageBytes, addOpts)
      : await feeder.addBatch((scoped as { tasks: unknown[] }).tasks as TaskInput[], addOpts);
    const n = added.tasks.length;
    const skipped = added.tasks.filter((t) => t.existing).length;
    const deduped = added.tasks.filter((t) => t.deduplicated).length;
    const fresh = n - skipped - deduped;
    const stored =
      `stored ${fresh} task${fresh === 1 ? '' : 's'} in batch ${added.batch}` +
      (skipped > 0 ? `; ${skipped} already stored, skipped` : '') +
      (deduped > 0 ? `; ${deduped} deduplicated` : '');
    if (!opts.wait) {
      const out = opts.out ?? process.stdout;
      if (opts.json) {
        const tasks = added.tasks.map((t) => ({
          id: local(t.id),
          taskId: t.id,
          _id: t._id,
          existing: t.existing,
          deduplicated: t.deduplicated,
        }));
        out.write(`${JSON.stringify({ batch: added.batch, tasks })}\n`);
      } else {
        out.write(`${stored}\n`);
        for (const [i, t] of added.tasks.entries()) out.write(`${refLine(t, i, local)}\n`);
      }
      return 0;
    }

    say(`${stored}; waiting for the outcomes`);
    // Never a silent drop: each deduplicated task names the task whose outcome it gets.
    for (const [i, t] of added.tasks.entries()) if (t.deduplicated) say(refLine(t, i, local));
    const progress = batchProgress(n, err);
    const onProgress = (p: { id: string; progress: number }) => progress.task(p.id, p.progress);
    feeder.on('progress', onProgress);
    let outcomes: TaskOutcome[];
    try {
      outcomes = await feeder.wait(added.tasks, (o) => progress.add(o));
    } finally {
      feeder.off('progress', onProgress);
      progress.stop();
    }
    const shown = outcomes.map((o) => ({
      ...o,
      id: local(o.id),
      taskId: o.id,
      ...(o.error ? { error: { ...o.error, message: unscope(o.error.message) } } : {}),
    }));
    if (!opts.quiet) await writeResults(shown, opts);
    summarize(shown, Date.now() - started, say);
    if (opts.outFile && !opts.quiet) say(`results in ${opts.outFile}`);
    return outcomes.every((o) => o.state === 'done') ? 0 : 1;
  } catch (e) {
    if (e instanceof TaskmasterError && e.code === 'EVALIDATION') {
      const issues = issuesOf(e.details);
      const before = (e.details as { storedBefore?: number } | undefined)?.storedBefore ?? 0;
      if (issues.length === 0) say(`taskmaster feed: the master refused the batch: ${unscope(e.message)}`);
      else {
        say(
          `taskmaster feed: the master refused the batch, ${before > 0 ? `after ${before} of its tasks were stored by earlier adds` : 'nothing was stored'} (${issues.length} issue${issues.length === 1 ? '' : 's'}):`,
        );
        for (const i of issues) say(`  ${i.path}: ${unscope(i.message)}${lineOf(i.path, lines, opts.file)}`);
      }
      return 2;
    }
    const code = e instanceof TaskmasterError ? `${e.code}: ` : '';
    say(`taskmaster feed: ${code}${unscope((e as Error).message)}`);
    return 1;
  } finally {
    await feeder.close();
  }
}

/**
 * Stores the file's ids under the batch: `id` becomes `<batch>/<id>`, and so does every dependency on
 * an id of the same file. `local` maps a stored id back to the file's. The tasks are changed in
 * place (they are the file's, parsed for this feed): a copy would double what a large file takes.
 */
export function scopeIds(tasks: unknown[], batch: string): { tasks: unknown[]; local: Map<string, string> } {
  const ids = new Set<string>();
  for (const t of tasks) {
    const id = isObject(t) ? t.id : undefined;
    if (typeof id === 'string') ids.add(id);
  }
  const local = new Map<string, string>();
  const scope = (id: unknown) => (typeof id === 'string' && ids.has(id) ? `${batch}/${id}` : id);
  for (const t of tasks) {
    if (!isObject(t)) continue;
    if (typeof t.id === 'string') {
      const stored = scope(t.id) as string;
      local.set(stored, t.id);
      t.id = stored;
    }
    if (Array.isArray(t.dependencies)) t.dependencies = t.dependencies.map(scope);
  }
  return { tasks, local };
}

/** The file's size in bytes; a missing file is left for the read to name. */
async function fileSize(file: string): Promise<number> {
  return (await fs.promises.stat(file).catch(() => ({ size: 0 }))).size;
}

/** `example-batch-m3k9x2a7`: the file's name and the time in base 36, unique per feed. */
function batchName(file: string): string {
  const base = file === '-' ? 'stdin' : path.basename(file).replace(/\.[^.]*$/, '');
  const clean = base.replace(/[^A-Za-z0-9_.-]/g, '_').slice(0, 60) || 'batch';
  const rand = Math.floor(Math.random() * 36 ** 3).toString(36);
  return `${clean}-${Date.now().toString(36)}${rand}`;
}

async function writeResults(outcomes: TaskOutcome[], opts: FeedOptions): Promise<void> {
  const text = opts.json
    ? `${JSON.stringify(outcomes)}\n`
    : outcomes.map((o) => `${resultLine(o)}\n`).join('');
  if (opts.outFile) await fs.promises.writeFile(opts.outFile, text);
  else (opts.out ?? process.stdout).write(text);
}

function summarize(outcomes: TaskOutcome[], ms: number, say: (s: string) => void): void {
  const count = (s: TaskOutcome['state']) => outcomes.filter((o) => o.state === s).length;
  const bad = outcomes.filter((o) => o.state !== 'done');
  if (bad.length > 0) {
    say(bad.some((o) => o.state === 'failed') ? 'not done:' : 'cancelled:');
    for (const o of bad) say(`  ${o.id}  ${o.state}  ${o.error?.code ?? '-'}  ${o.error?.message ?? ''}`);
  }
  say(
    `${outcomes.length} tasks in ${(ms / 1000).toFixed(1)} s: ${count('done')} done, ${count('failed')} failed, ${count('cancelled')} cancelled`,
  );
}

/**
 * What was stored for the task at `index` of the file: its id, `<id>\texisting\t<state>`, or
 * `tasks[i]\tdeduplicated → <id>` (the task holding its dedup key, whose outcome it gets).
 */
function refLine(t: TaskRef, index: number, local: (id: string) => string): string {
  if (t.deduplicated) return `tasks[${index}]\tdeduplicated → ${local(t.id)}`;
  return t.existing ? `${local(t.id)}\texisting\t${t.existing.state}` : local(t.id);
}

/** One result per line: `id  done  <result as JSON>` or `id  failed  CODE message`. */
export function resultLine(o: TaskOutcome): string {
  if (o.state === 'done') return `${o.id}\tdone\t${o.result === undefined ? '' : JSON.stringify(o.result)}`;
  return `${o.id}\t${o.state}\t${o.error?.code ?? ''}\t${o.error?.message ?? ''}`;
}

/** ` (batch.ndjson:7)` for an issue about `tasks[i]` of an NDJSON file. */
function lineOf(path: string, lines: number[] | undefined, file: string): string {
  const m = /^tasks\[(\d+)\]/.exec(path);
  const line = m && lines ? lines[Number(m[1])] : undefined;
  return line === undefined ? '' : ` (${file === '-' ? 'stdin' : file}:${line})`;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

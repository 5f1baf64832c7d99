/**
 * `taskmaster feed FILE`: adds a batch; with `--wait`, shows a progress bar (cli-progress) on stderr
 * and prints a summary. Exit code: 0 all done, 1 a task failed or was cancelled, 2 bad input.
 */
import cliProgress from 'cli-progress';
import type { Logger } from '../common/logger';
import { TaskmasterError } from '../protocol/errors';
import type { TaskInput, TaskOutcome } from '../protocol/schemas';
import { readBatch } from './batch-file';
import { Feeder } from './feeder';

export interface FeedOptions {
  master: string;
  token?: string;
  batch?: string;
  wait?: boolean;
  json?: boolean;
  logger: Logger;
  out?: NodeJS.WritableStream;
  err?: NodeJS.WritableStream & { isTTY?: boolean };
}

export async function feed(file: string, opts: FeedOptions): Promise<number> {
  const out = opts.out ?? process.stdout;
  const err = opts.err ?? process.stderr;
  let tasks: unknown[];
  try {
    tasks = await readBatch(file);
  } catch (e) {
    err.write(`taskmaster feed: ${(e as Error).message}\n`);
    return 2;
  }
  const feeder = new Feeder({ master: opts.master, token: opts.token, logger: opts.logger });
  const started = Date.now();
  try {
    await feeder.ready();
    const refs = await feeder.add(tasks as TaskInput[], {
      batch: opts.batch,
      onQueueFull: ({ waitMs, attempt }) =>
        err.write(`master queue full; retry ${attempt} in ${waitMs} ms…\n`),
    });
    if (!opts.wait) {
      out.write(opts.json ? `${JSON.stringify(refs)}\n` : `added ${refs.length} tasks\n`);
      return 0;
    }
    const counts = { done: 0, failed: 0, cancelled: 0 };
    const tty = err.isTTY === true;
    const bar = tty
      ? new cliProgress.SingleBar(
          {
            format: 'tasks |{bar}| {value}/{total} done {done} failed {failed} | {duration_formatted}',
            hideCursor: true,
            stream: err,
          },
          cliProgress.Presets.shades_classic,
        )
      : null;
    bar?.start(refs.length, 0, counts);
    let lastLine = 0;
    const outcomes = await Promise.all(
      refs.map((r) =>
        feeder.outcome(r.id).then((o) => {
          counts[o.state]++;
          const finished = counts.done + counts.failed + counts.cancelled;
          if (bar) bar.update(finished, counts);
          else if (Date.now() - lastLine > 1000 || finished === refs.length) {
            lastLine = Date.now();
            err.write(
              `${finished}/${refs.length} finished (done ${counts.done}, failed ${counts.failed}, cancelled ${counts.cancelled})\n`,
            );
          }
          return o;
        }),
      ),
    );
    bar?.stop();
    summarize(outcomes, Date.now() - started, opts.json === true, out, err);
    return counts.failed + counts.cancelled > 0 ? 1 : 0;
  } catch (e) {
    const te = e as TaskmasterError;
    if (te.code === 'EVALIDATION') {
      const issues =
        (te.details as { issues?: { path: string; message: string }[] } | undefined)?.issues ?? [];
      err.write(`taskmaster feed: the batch was refused, nothing was stored:\n`);
      for (const i of issues) err.write(`  ${i.path}: ${i.message}\n`);
      if (issues.length === 0) err.write(`  ${te.message}\n`);
      return 2;
    }
    err.write(`taskmaster feed: ${te.code ? `${te.code}: ` : ''}${te.message}\n`);
    return 1;
  } finally {
    await feeder.close();
  }
}

function summarize(
  outcomes: TaskOutcome[],
  ms: number,
  json: boolean,
  out: NodeJS.WritableStream,
  err: NodeJS.WritableStream,
): void {
  const by = (s: string) => outcomes.filter((o) => o.state === s);
  err.write(
    `\n${outcomes.length} tasks in ${(ms / 1000).toFixed(1)} s: ${by('done').length} done, ${by('failed').length} failed, ${by('cancelled').length} cancelled\n`,
  );
  for (const o of [...by('failed'), ...by('cancelled')])
    err.write(`  ${o.id}: ${o.error?.code ?? o.state} ${o.error?.message ?? ''}\n`);
  if (json) out.write(`${JSON.stringify(outcomes)}\n`);
  else for (const o of by('done')) out.write(`${o.id}\t${JSON.stringify(o.result)}\n`);
}

/**
 * Operator commands on tasks and batches, through the master's HTTP API: `taskmaster get ID`,
 * `ls` (filters), `retry ID | --batch B --failed` (rerun from failed), `cancel ID | --batch B`, and
 * `watch BATCH` (re-attach to a batch: a progress bar, then the summary `feed --wait` prints).
 * Readable tables by default, `--json` for scripts.
 */
import type { Command } from 'commander';
import { TaskmasterError } from '../protocol/errors';
import type { TaskOutcome } from '../protocol/schemas';
import { VIEW_STATES } from '../protocol/views';
import type { BatchView, TaskDetail, TaskView } from '../protocol/views';
import { batchProgress } from '../feeder/progress';
import { api, seg, withMasterFlags, type ApiFlags } from './api-client';
import { duration, table, when } from './table';

interface Flags extends ApiFlags {
  json?: boolean;
  state?: string;
  batch?: string;
  module?: string;
  runner?: string;
  limit?: string;
  failed?: boolean;
  interval?: string;
}

const out = (s: string) => void process.stdout.write(s);

export function registerTaskCommands(program: Command, setCode: (code: number) => void): void {
  withMasterFlags(
    program.command('get').description('show one task: state, attempts, params, result or error, timeline'),
  )
    .argument('<id>', 'the task id')
    .option('--json', 'print JSON')
    .action(async (id: string, flags: Flags) => {
      const { task } = await api<{ task: TaskDetail }>(flags, `/api/tasks/${seg(id)}`);
      if (flags.json) out(`${JSON.stringify(task)}\n`);
      else out(describeTask(task));
      setCode(0);
    });

  withMasterFlags(program.command('ls').description('list tasks, newest first, with filters'))
    .option(
      '--state <state>',
      `only tasks in this state: ${VIEW_STATES.join(', ')} (waiting or ready with a runAt to come)`,
    )
    .option('--batch <name>', 'only tasks of this batch')
    .option('--module <name>', 'only tasks of this module')
    .option('--runner <id>', 'only tasks last assigned to this runner')
    .option('--limit <n>', 'at most this many tasks (default 100)')
    .option('--json', 'print JSON, one task per line')
    .action(async (flags: Flags) => {
      const limit = Number(flags.limit ?? 100);
      if (!Number.isInteger(limit) || limit < 1)
        throw new TaskmasterError(
          'EVALIDATION',
          `--limit: must be a positive integer (got "${flags.limit}")`,
        );
      const tasks: TaskView[] = [];
      let cursor: string | null = null;
      do {
        const q = new URLSearchParams();
        for (const k of ['state', 'batch', 'module', 'runner'] as const)
          if (flags[k]) q.set(k, flags[k] as string);
        q.set('limit', String(Math.min(500, limit - tasks.length)));
        if (cursor) q.set('cursor', cursor);
        const page: { tasks: TaskView[]; next: string | null } = await api(flags, `/api/tasks?${q}`);
        tasks.push(...page.tasks);
        cursor = page.next;
      } while (cursor && tasks.length < limit);
      if (flags.json) out(tasks.map((t) => `${JSON.stringify(t)}\n`).join(''));
      else if (tasks.length === 0) process.stderr.write('no tasks\n');
      else
        out(
          table(
            ['ID', 'STATE', 'MODULE', 'BATCH', 'ATTEMPTS', 'RUNNER', 'CREATED', 'ERROR'],
            tasks.map((t) => [
              t.id,
              t.state === 'delayed' ? `delayed until ${when(t.runAt)}` : t.state,
              t.module,
              t.batch,
              `${t.attempts}/${t.maxAttempts}`,
              t.runner ?? '-',
              when(t.created),
              t.error ? `${t.error.code} ${oneLine(t.error.message, 60)}` : '',
            ]),
          ),
        );
      setCode(0);
    });

  withMasterFlags(
    program
      .command('retry')
      .description('run a failed or cancelled task again; the tasks that failed because it did run after it'),
  )
    .argument('[id]', 'the task id')
    .option(
      '--batch <name>',
      'with --failed: every failure of this batch (and the tasks that failed with them)',
    )
    .option('--failed', "with --batch: retry the batch's failures")
    .option('--json', 'print JSON')
    .action(async (id: string | undefined, flags: Flags) => {
      let retried: string[];
      if (id && !flags.batch && !flags.failed) {
        ({ retried } = await api<{ retried: string[] }>(flags, `/api/tasks/${seg(id)}/retry`, 'POST'));
      } else if (!id && flags.batch && flags.failed) {
        ({ retried } = await api<{ retried: string[] }>(
          flags,
          `/api/batches/${seg(flags.batch)}/retry-failed`,
          'POST',
        ));
      } else throw new TaskmasterError('EVALIDATION', 'give a task id, or --batch NAME --failed');
      if (flags.json) out(`${JSON.stringify({ retried })}\n`);
      else
        out(
          retried.length === 0 ? 'nothing to retry\n' : `retried ${retried.length}: ${retried.join(' ')}\n`,
        );
      setCode(0);
    });

  withMasterFlags(program.command('cancel').description('cancel a task, or every unfinished task of a batch'))
    .argument('[id]', 'the task id')
    .option('--batch <name>', 'cancel every unfinished task of this batch')
    .option('--json', 'print JSON')
    .action(async (id: string | undefined, flags: Flags) => {
      if (!id === !flags.batch) throw new TaskmasterError('EVALIDATION', 'give a task id, or --batch NAME');
      const path = id ? `/api/tasks/${seg(id)}/cancel` : `/api/batches/${seg(flags.batch as string)}/cancel`;
      const { cancelled } = await api<{ cancelled: string[] }>(flags, path, 'POST');
      if (flags.json) out(`${JSON.stringify({ cancelled })}\n`);
      else
        out(
          cancelled.length === 0
            ? 'nothing to cancel\n'
            : `cancelled ${cancelled.length}: ${cancelled.join(' ')}\n`,
        );
      setCode(0);
    });

  withMasterFlags(
    program
      .command('watch')
      .description('follow a batch until it finishes: progress on stderr, then its failures and a summary'),
  )
    .argument('<batch>', 'the batch name')
    .option('--interval <ms>', 'how often to ask the master (default 500)')
    .option('--json', 'print the final batch as JSON on stdout')
    .action(async (batch: string, flags: Flags) => {
      setCode(await watch(batch, flags));
    });
}

async function watch(batch: string, flags: Flags): Promise<number> {
  const interval = Number(flags.interval ?? 500);
  if (!Number.isInteger(interval) || interval < 50)
    throw new TaskmasterError(
      'EVALIDATION',
      `--interval: must be an integer of at least 50 ms (got "${flags.interval}")`,
    );
  const read = async () => (await api<{ batch: BatchView }>(flags, `/api/batches/${seg(batch)}`)).batch;
  let b = await read();
  const progress = batchProgress(b.total, process.stderr);
  const shown: Record<'done' | 'failed' | 'cancelled', number> = { done: 0, failed: 0, cancelled: 0 };
  const show = (v: BatchView) => {
    for (const state of ['done', 'failed', 'cancelled'] as const)
      while (shown[state] < (v.counts[state] ?? 0)) {
        shown[state]++;
        progress.add({ id: `${state}#${shown[state]}`, batch, state, attempts: 0 } as TaskOutcome);
      }
  };
  try {
    show(b);
    while (b.finishedAt === null) {
      await new Promise((r) => setTimeout(r, interval));
      b = await read();
      show(b);
    }
  } finally {
    progress.stop();
  }
  const say = (s: string) => void process.stderr.write(`${s}\n`);
  const bad = (b.counts.failed ?? 0) + (b.counts.cancelled ?? 0);
  if (bad > 0) {
    const q = new URLSearchParams({ batch, limit: '50' });
    const failed = await api<{ tasks: TaskView[] }>(flags, `/api/tasks?${q}&state=failed`);
    const cancelled = await api<{ tasks: TaskView[] }>(flags, `/api/tasks?${q}&state=cancelled`);
    say('not done:');
    for (const t of [...failed.tasks, ...cancelled.tasks])
      say(`  ${t.id}  ${t.state}  ${t.error?.code ?? '-'}  ${t.error?.message ?? ''}`);
    if (bad > 100) say(`  … and ${bad - 100} more: taskmaster ls --batch ${batch} --state failed`);
  }
  if (flags.json) out(`${JSON.stringify(b)}\n`);
  say(
    `${b.total} tasks in ${duration(b.durationMs)}: ${b.counts.done ?? 0} done, ${b.counts.failed ?? 0} failed, ${b.counts.cancelled ?? 0} cancelled`,
  );
  return bad === 0 ? 0 : 1;
}

function describeTask(t: TaskDetail): string {
  const rows: [string, string][] = [
    ['id', t.id],
    ['batch', t.batch],
    ['module', t.module],
    ['state', t.state + (t.progress !== undefined ? ` (${Math.round(t.progress * 100)}%)` : '')],
    ['attempts', `${t.attempts}/${t.maxAttempts}`],
    ['priority', String(t.priority)],
    ['runner', t.runner ?? '-'],
    ['created', when(t.created)],
    ...(t.runAt ? [['run at', when(t.runAt)] as [string, string]] : []),
    ['assigned', when(t.assignedAt)],
    ['finished', when(t.finishedAt)],
  ];
  if (t.dependencies.length > 0) rows.push(['dependencies', t.dependencies.join(' ')]);
  if (t.why) rows.push(['why', t.why]);
  rows.push(['params', JSON.stringify(t.params)]);
  if (t.state === 'done') rows.push(['result', JSON.stringify(t.result ?? null)]);
  if (t.error) rows.push(['error', `${t.error.code} ${t.error.message}`]);
  const width = Math.max(...rows.map(([k]) => k.length));
  const head = rows.map(([k, v]) => `${k.padEnd(width)}  ${v}\n`).join('');
  const timeline = table(
    ['AT', 'STATE', 'ATTEMPT', 'RUNNER', 'CODE'],
    t.timeline.map((e) => [when(e.at), e.state, e.attempt, e.runner ?? '', e.code ?? '']),
  );
  return `${head}\ntimeline:\n${timeline}`;
}

function oneLine(s: string, max: number): string {
  const line = s.replace(/\s+/g, ' ');
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
}

/**
 * `taskmaster schedule add ID --cron '0 3 * * *' --tz Europe/Berlin --module M --params JSON`,
 * `schedule ls` and `schedule rm ID`, through the master's HTTP API (`/api/schedules`). The master
 * parses the definition and names the field it refuses.
 */
import type { Command } from 'commander';
import { TaskmasterError } from '../protocol/errors';
import type { ScheduleView } from '../protocol/schedules';
import { api, seg, withMasterFlags, type ApiFlags } from './api-client';
import { table } from './table';

interface AddFlags extends ApiFlags {
  cron?: string;
  every?: string;
  tz?: string;
  module?: string;
  params?: string;
  task?: string;
  misfire?: string;
  startAt?: string;
  endAt?: string;
  limit?: string;
  json?: boolean;
}

const out = (s: string) => void process.stdout.write(s);

function jsonFlag(flag: string, text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new TaskmasterError('EVALIDATION', `${flag}: not JSON (${text.slice(0, 80)})`);
  }
}

/** A number flag as a number, anything else as given: the master says what is wrong with it. */
function numberFlag(text: string | undefined): number | string | undefined {
  if (text === undefined) return undefined;
  return /^\d+$/.test(text) ? Number(text) : text;
}

export function registerScheduleCommands(program: Command, setCode: (code: number) => void): void {
  const schedule = program
    .command('schedule')
    .description('recurring schedules: each slot adds one task, <id>@<slot time>');

  withMasterFlags(
    schedule.command('add').description('create or change a schedule (the same definition changes nothing)'),
  )
    .argument('<id>', 'the schedule id')
    .option('--cron <expr>', 'cron expression, 5 fields or 6 (seconds first)')
    .option('--every <ms>', 'interval in ms (instead of --cron)')
    .option('--tz <zone>', 'IANA time zone of the cron expression (default UTC)')
    .option('--module <name>', 'the task module each slot runs')
    .option('--params <json>', 'the task params, a JSON array')
    .option('--task <json>', 'more task fields, a JSON object (priority, maxAttempts, timeout…)')
    .option('--misfire <mode>', 'slots missed while no master ran: skip, once (default) or all')
    .option('--start-at <time>', 'no slot before this ISO 8601 time')
    .option('--end-at <time>', 'no slot after this ISO 8601 time')
    .option('--limit <n>', 'at most this many tasks in all')
    .option('--json', 'print JSON')
    .action(async (id: string, flags: AddFlags) => {
      const extra = flags.task === undefined ? {} : jsonFlag('--task', flags.task);
      if (extra === null || typeof extra !== 'object' || Array.isArray(extra))
        throw new TaskmasterError('EVALIDATION', '--task: must be a JSON object');
      const task = {
        ...extra,
        ...(flags.module !== undefined ? { module: flags.module } : {}),
        ...(flags.params !== undefined ? { params: jsonFlag('--params', flags.params) } : {}),
      };
      const body = {
        cron: flags.cron,
        every: numberFlag(flags.every),
        tz: flags.tz,
        task,
        misfire: flags.misfire,
        startAt: flags.startAt,
        endAt: flags.endAt,
        limit: numberFlag(flags.limit),
      };
      const r = await api<{ outcome: string; schedule: ScheduleView }>(
        flags,
        `/api/schedules/${seg(id)}`,
        'PUT',
        body,
      );
      if (flags.json) out(`${JSON.stringify(r)}\n`);
      else out(`${r.outcome} ${id}: next ${r.schedule.nextAt ?? 'none (ended)'}\n`);
      setCode(0);
    });

  withMasterFlags(
    schedule.command('ls').description('list schedules: next slot, last slot fired, tasks created'),
  )
    .option('--json', 'print JSON, one schedule per line')
    .action(async (flags: ApiFlags & { json?: boolean }) => {
      const { schedules } = await api<{ schedules: ScheduleView[] }>(flags, '/api/schedules');
      if (flags.json) out(schedules.map((s) => `${JSON.stringify(s)}\n`).join(''));
      else if (schedules.length === 0) process.stderr.write('no schedules\n');
      else
        out(
          table(
            ['ID', 'WHEN', 'MODULE', 'MISFIRE', 'NEXT', 'LAST', 'COUNT'],
            schedules.map((s) => [
              s.id,
              s.cron !== undefined ? `${s.cron}${s.tz ? ` ${s.tz}` : ''}` : `every ${s.every} ms`,
              String(s.task.module),
              s.misfire,
              s.nextAt ?? '-',
              s.lastSlot ?? '-',
              s.count,
            ]),
          ),
        );
      setCode(0);
    });

  withMasterFlags(
    schedule.command('rm').description('remove a schedule: none of its slots fires from then on'),
  )
    .argument('<id>', 'the schedule id')
    .action(async (id: string, flags: ApiFlags) => {
      await api(flags, `/api/schedules/${seg(id)}`, 'DELETE');
      out(`removed ${id}\n`);
      setCode(0);
    });
}

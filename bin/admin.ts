/**
 * Operator commands that talk to a running master's HTTP API: `taskmaster status` (runners, slots in
 * use, loaded modules, counters), `taskmaster drain RUNNER_ID` (no new work for that runner; with
 * `--wait`, returns once it has none left) and `taskmaster undrain RUNNER_ID` (work again),
 * `taskmaster purge` (remove final tasks now).
 */
import type { Command } from 'commander';
import { parseMasterUrls } from '../common/master-urls';
import { api, DEFAULT_MASTER, withMasterFlags } from './api-client';
import { table } from './table';

interface AdminFlags {
  batch?: string;
  state?: string;
  before?: string;
  master?: string;
  token?: string;
  json?: boolean;
  wait?: boolean;
  timeout?: string;
}

interface Status {
  tasks: number;
  stats: Record<'added' | 'assigned' | 'done' | 'failed' | 'cancelled' | 'retried', number>;
  store: { writeBacklog: number; foldBacklog: number; oldestUnfoldedMs: number; retrying: boolean } | null;
  /** Modules ready tasks wait for, because no connected runner can run them. */
  waitingForModules?: { module: string; tasks: number; why: string }[];
}

interface RunnerView {
  id: string;
  hostname: string | null;
  connected: boolean;
  draining: boolean;
  idle: boolean;
  slots: number;
  inUse: number;
  workers: number;
  data: Record<string, unknown>;
  modules: { name: string; hash: string }[];
}

/** A master as its `/health` shows it: role, epoch and lease age, or `unreachable`. */
interface MasterView {
  url: string;
  role: string;
  epoch?: number;
  ageMs?: number | null;
  active?: string | null;
}

/** Every master of `--master` (a comma-separated list), asked for its `/health`. */
async function mastersOf(flags: AdminFlags): Promise<MasterView[]> {
  const given = flags.master !== undefined;
  const list = parseMasterUrls(
    flags.master ?? (process.env.TASKMASTER_MASTER || DEFAULT_MASTER),
    given ? '--master' : 'TASKMASTER_MASTER',
  );
  return Promise.all(
    list.map(async (url): Promise<MasterView> => {
      try {
        const h = await api<{
          role: string;
          epoch: number;
          active: string | null;
          lease: { ageMs: number | null };
        }>({ ...flags, master: url }, '/health');
        return { url, role: h.role, epoch: h.epoch, ageMs: h.lease?.ageMs ?? null, active: h.active };
      } catch (err) {
        return { url, role: `unreachable: ${err instanceof Error ? err.message : String(err)}` };
      }
    }),
  );
}

function describe(r: RunnerView): string {
  const state = !r.connected ? 'disconnected' : r.draining ? (r.idle ? 'drained' : 'draining') : 'ready';
  const mods = r.modules.map((m) => `${m.name}@${m.hash.slice(0, 8)}`).join(' ') || '-';
  return `${r.id}\t${state}\t${r.inUse}/${r.slots} slots\t${r.workers} workers\t${JSON.stringify(r.data)}\t${mods}`;
}

export function registerAdminCommands(program: Command, setCode: (code: number) => void): void {
  const common = withMasterFlags;

  common(
    program.command('status').description("show the master's counters, its store's backlog and its runners"),
  )
    .option('--json', 'print JSON')
    .action(async (flags: AdminFlags) => {
      const masters = await mastersOf(flags);
      const { runners } = (await api(flags, '/api/runners')) as { runners: RunnerView[] };
      const status = (await api(flags, '/api/status')) as Status;
      if (flags.json) {
        process.stdout.write(`${JSON.stringify({ ...status, masters, runners })}\n`);
        return setCode(0);
      }
      process.stdout.write(
        `${table(
          ['MASTER', 'ROLE', 'EPOCH', 'LEASE AGE', 'ACTIVE'],
          masters.map((m) => [
            m.url,
            m.role,
            m.epoch ?? '-',
            m.ageMs === null || m.ageMs === undefined ? '-' : `${m.ageMs} ms`,
            m.active ?? '-',
          ]),
        )}\n`,
      );
      const st = status.stats;
      const store = status.store;
      process.stdout.write(
        table(
          ['TASKS IN MEMORY', 'ADDED', 'ASSIGNED', 'DONE', 'FAILED', 'CANCELLED', 'RETRIED'],
          [[status.tasks, st.added, st.assigned, st.done, st.failed, st.cancelled, st.retried]],
        ),
      );
      if (store)
        process.stdout.write(
          `\n${table(
            ['WRITE BACKLOG', 'FOLD BACKLOG', 'OLDEST UNFOLDED', 'RETRYING'],
            [
              [
                store.writeBacklog,
                store.foldBacklog,
                `${store.oldestUnfoldedMs} ms`,
                store.retrying ? 'yes' : 'no',
              ],
            ],
          )}`,
        );
      process.stdout.write('\n');
      if (runners.length === 0) process.stdout.write('no runners\n');
      else
        process.stdout.write(
          table(
            ['RUNNER', 'STATE', 'SLOTS', 'WORKERS', 'DATA', 'MODULES'],
            runners.map((r) => {
              const [id, state, slots, workers, data, mods] = describe(r).split('\t');
              return [id, state, slots.replace(' slots', ''), workers.replace(' workers', ''), data, mods];
            }),
          ),
        );
      for (const w of status.waitingForModules ?? [])
        process.stdout.write(`\n${w.tasks} task${w.tasks === 1 ? '' : 's'} wait: ${w.why}\n`);
      setCode(0);
    });

  common(program.command('drain').description('give a runner no new work; its running tasks finish'))
    .argument('<runner-id>', 'the runner, as `taskmaster status` lists it')
    .option('--wait', 'wait until the runner has no work left')
    .option('--timeout <ms>', 'with --wait: give up after this long (default 600000)')
    .action(async (id: string, flags: AdminFlags) => {
      let { runner } = (await api(flags, `/api/runners/${encodeURIComponent(id)}/drain`, 'POST')) as {
        runner: RunnerView;
      };
      process.stdout.write(`${describe(runner)}\n`);
      const until = Date.now() + Number(flags.timeout ?? 600_000);
      let delay = 100;
      while (flags.wait && !runner.idle) {
        if (Date.now() > until) {
          process.stderr.write(`taskmaster drain: ${id} still holds ${runner.inUse} tasks\n`);
          return setCode(1);
        }
        await new Promise((r) => setTimeout(r, delay));
        delay = Math.min(delay * 2, 2000);
        const { runners } = (await api(flags, '/api/runners')) as { runners: RunnerView[] };
        const now = runners.find((r) => r.id === id);
        if (!now) break; // gone: nothing left on it either
        runner = now;
      }
      if (flags.wait) process.stdout.write(`${id}: no work left\n`);
      setCode(0);
    });

  common(program.command('undrain').description('let a drained runner take work again'))
    .argument('<runner-id>', 'the runner, as `taskmaster status` lists it')
    .action(async (id: string, flags: AdminFlags) => {
      const { runner } = (await api(flags, `/api/runners/${encodeURIComponent(id)}/undrain`, 'POST')) as {
        runner: RunnerView;
      };
      process.stdout.write(`${describe(runner)}\n`);
      setCode(0);
    });

  common(
    program
      .command('purge')
      .description('remove final tasks from the database now; their ids can be used again'),
  )
    .option('--batch <name>', 'only tasks of this batch')
    .option('--state <state>', 'only tasks in this final state: done, failed or cancelled')
    .option('--before <date>', 'only tasks that became final before this date (ISO 8601, e.g. 2026-11-01)')
    .action(async (flags: AdminFlags) => {
      const filter: Record<string, unknown> = {};
      if (flags.batch) filter.batch = flags.batch;
      if (flags.state) filter.state = flags.state;
      if (flags.before) {
        const t = Date.parse(flags.before);
        if (Number.isNaN(t)) {
          process.stderr.write(`taskmaster purge: --before: not a date: "${flags.before}"\n`);
          return setCode(2);
        }
        filter.before = t;
      }
      const { purged } = (await api(flags, '/api/purge', 'POST', filter)) as { purged: number };
      process.stdout.write(`purged ${purged} tasks\n`);
      setCode(0);
    });
}

/**
 * The `taskmaster` command line. Thin: commander parses the flags, each role's config module turns
 * flags and environment into validated options, and the role's start function does the rest.
 *
 * `main` returns the exit code: 0 success, 1 failure (a task failed, the master is unreachable),
 * 2 usage (unknown command or flag, a bad setting, an invalid batch).
 */
import { Command, CommanderError } from 'commander';
import { createLogger, type Logger } from '../common/logger';
import { LOG_SETTINGS, integer, nonEmpty, readSettings, type LogSettings } from '../common/settings';
import { feederConfig, type FeederFlags } from '../feeder/config';
import { feed } from '../feeder/feed-cli';
import { databaseName, masterConfig, masterSettings, type MasterFlags } from '../master/config';
import { addFlags } from './flags';
import { Master } from '../master/master';
import { readTlsFiles } from '../master/tls';
import { z } from 'zod';
import {
  databaseLine,
  describeDatabase,
  resolveDatabase,
  startEmbeddedDatabase,
  type Database,
} from '../db/server';
import { TaskmasterError } from '../protocol/errors';
import { runnerConfig, type RunnerFlags } from '../runner/config';
import { Runner } from '../runner/runner';
import { discoverMaster, masterFromTracker } from '../common/discovery';
import { registerAdminCommands } from './admin';
import { runDemo } from './demo';
import { initTasks } from './init';
import { registerTaskCommands } from './tasks-cli';
import { registerScheduleCommands } from './schedules-cli';
import { onReload, shutdown, watchSignals } from './signals';

const USAGE = 2;

const DB_SETTINGS = {
  port: { flag: '--port', schema: integer(0, 65535) },
  data: { flag: '--data', env: 'TASKMASTER_DATA', schema: nonEmpty() },
  synchronous: { flag: '--synchronous', schema: z.enum(['full', 'normal']) },
};

function logger(log: LogSettings, role: string, stderr = false): Logger {
  return createLogger({ format: log.format, level: log.level ?? 'info', meta: { role }, stderr });
}

/** `--log-format` and `--log-level`; `level` is the command's default (feed and demo print their own story). */
const withLogFlags = (cmd: Command, level: 'info' | 'warn' = 'info'): Command =>
  cmd
    .option(
      '--log-format <format>',
      'pretty or json (env TASKMASTER_LOG_FORMAT; default: pretty on a terminal, else json)',
    )
    .option(
      '--log-level <level>',
      `error, warn, info, verbose or debug (env TASKMASTER_LOG_LEVEL; default ${level})`,
    );

const collect = (value: string, previous: string[] | undefined): string[] => [...(previous ?? []), value];

export async function main(argv: string[]): Promise<number> {
  let code = 0;
  quietOnClosedPipe();
  const program = new Command()
    .name('taskmaster')
    .description(
      'A distributed task master: a master keeps tasks in MongoDB and pushes them to runners; feeders add batches.',
    )
    .exitOverride()
    .showHelpAfterError()
    .showSuggestionAfterError();

  addFlags(
    program
      .command('master')
      .description('start the master: Socket.IO and HTTP on one port, tasks kept in MongoDB'),
    masterSettings(),
  ).action(async (flags: MasterFlags) => {
    code = await runMaster(flags);
  });

  withLogFlags(
    program
      .command('runner')
      .description(
        'start a runner: connects to the master and runs task modules in child processes (or threads)',
      )
      .option(
        '--master <urls>',
        'master URL, or several separated by commas: an active master and its standbys (env TASKMASTER_MASTER; default http://127.0.0.1:3232)',
      )
      .option(
        '--tasks <dir>',
        'task folder, searched in order; repeatable (env TASKMASTER_TASKS, colon-separated; default ./tasks)',
        collect,
      )
      .option('--slots <n>', 'tasks run at once (env TASKMASTER_SLOTS; default: the number of workers)')
      .option('--workers <n>', 'child processes (env TASKMASTER_WORKERS; default: CPU cores)')
      .option(
        '--isolation <kind>',
        'process: each worker a child process; thread: a worker thread in the runner (env TASKMASTER_ISOLATION; default process)',
      )
      .option('--priority-slots <json>', 'slots guaranteed per priority range, e.g. \'{"1":30,"2":20}\'')
      .option('--token <secret>', 'token for the master (env TASKMASTER_TOKEN)')
      .option('--ca <file>', 'PEM certificate of the CA that signed an https master (env TASKMASTER_CA)')
      .option('--data <json>', 'data announced to the master, e.g. \'{"gpu":true}\'')
      .option(
        '--runner-id <id>',
        'stable id across reconnects (env TASKMASTER_RUNNER_ID; default: host-pid-random)',
      )
      .option('--answer-threshold <n>', 'results batched before answering the master (default 1)')
      .option(
        '--shutdown-grace-ms <ms>',
        'on SIGTERM/SIGINT, how long running tasks may finish before they are given back (default 10000)',
      )
      .option(
        '--max-tasks-per-worker <n>',
        'replace a child process after it has finished n tasks (default: unlimited)',
      )
      .option(
        '--module-stable-ms <ms>',
        'a changed module file is loaded once unchanged this long (default 200)',
      )
      .option(
        '--max-result-bytes <n>',
        'largest result a task may report; larger fails with ETOOLARGE (default: one message to the master less 16 KiB, from its --max-message-bytes)',
      )
      .option(
        '--max-worker-memory <mb>',
        'replace a child process whose resident memory is above mb after a task (default 1024)',
      )
      .option(
        '--allow-exec <programs>',
        'programs the built-in exec task may run, as tasks name them, e.g. node,/bin/echo (default: none)',
      )
      .option('--discover', "find the master from its UDP announcements (the master's --announce)")
      .option('--tracker <url>', 'find the master by asking this master (GET /hostsAvailable)')
      .option('--discovery-port <n>', 'UDP port of the announcements (default 44201)'),
  ).action(async (flags: RunnerFlags & DiscoveryFlags) => {
    code = await runRunner(flags);
  });

  withLogFlags(
    program
      .command('feed')
      .description('add a batch: a JSON array of tasks, or NDJSON (one task per line); - reads stdin')
      .argument('<file>', 'batch file, or - for stdin')
      .option(
        '--master <urls>',
        'master URL, or several separated by commas: an active master and its standbys (env TASKMASTER_MASTER; default http://127.0.0.1:3232)',
      )
      .option('--token <secret>', 'token for the master (env TASKMASTER_TOKEN)')
      .option('--ca <file>', 'PEM certificate of the CA that signed an https master (env TASKMASTER_CA)')
      .option(
        '--batch <name>',
        "batch name; the file's ids are stored as <batch>/<id> (default: the file's name and a time stamp)",
      )
      .option(
        '--on-existing <mode>',
        'a task whose id is already stored (the same --batch fed again): error (default) refuses the batch, skip keeps the stored task and waits for its outcome',
      )
      .option('--wait', 'wait for every outcome, with progress on stderr; print the results, then a summary')
      .option('--json', 'print JSON on stdout: the stored refs, or with --wait the outcomes')
      .option('--out <file>', 'with --wait, write the results to this file instead of stdout')
      .option('--quiet', 'with --wait, print no results: only progress and the summary')
      .option(
        '--connect-timeout <ms>',
        "give up if the master cannot be reached in time (default 300000, 5 min: a master's first start builds its database)",
      )
      .option('--discover', "find the master from its UDP announcements (the master's --announce)")
      .option('--tracker <url>', 'find the master by asking this master (GET /hostsAvailable)')
      .option('--discovery-port <n>', 'UDP port of the announcements (default 44201)'),
    'warn',
  ).action(async (file: string, flags: FeederFlags & DiscoveryFlags & FeedOutputFlags) => {
    const cfg = feederConfig(flags);
    const master = await locateMaster(flags, cfg.options.master, cfg.options.token, cfg.options.ca);
    code = await feed({
      file,
      feeder: { ...cfg.options, master },
      batch: cfg.batch,
      onExisting: cfg.onExisting,
      wait: flags.wait,
      json: flags.json,
      outFile: flags.out,
      quiet: flags.quiet,
      // The feed command's own output says what happened; the log only adds warnings.
      logger: logger({ ...cfg.log, level: cfg.log.level ?? 'warn' }, 'feeder', true),
    });
  });

  program
    .command('db')
    .description(
      'start the embedded database in the foreground; prints MONGO_URL=<url> once it accepts connections',
    )
    .option('--port <n>', 'port on 127.0.0.1 (default: a free one)')
    .option('--data <dir>', 'data folder (env TASKMASTER_DATA; default ./.taskmaster/db)')
    .option(
      '--synchronous <mode>',
      'full (default): every commit synced, survives a power loss; normal: synced at checkpoints, survives a crash of any process but may lose the last commits on a power loss',
    )
    .action(async (flags: { port?: string; data?: string; synchronous?: string }) => {
      code = await runDb(flags);
    });

  withLogFlags(
    program
      .command('demo')
      .description(
        'the whole system on this machine: a database, a master, a runner, and tasks/example-batch.json',
      ),
    'warn',
  ).action(async (flags: { logFormat?: string; logLevel?: string }) => {
    const s = readSettings('demo', LOG_SETTINGS, flags, process.env);
    code = await runDemo({
      logger: logger({ format: s.logFormat, level: s.logLevel ?? 'warn' }, 'demo', true),
    });
  });

  program
    .command('init')
    .description('write a tasks folder with an example task module (TypeScript) and a batch file to feed')
    .argument('[dir]', 'the folder to write', 'tasks')
    .action((dir: string) => {
      code = initTasks(dir);
    });

  registerAdminCommands(program, (c) => (code = c));
  registerTaskCommands(program, (c) => (code = c));
  registerScheduleCommands(program, (c) => (code = c));

  try {
    await program.parseAsync(argv);
  } catch (err) {
    // --help and --version end with exit code 0; every other parse error is a usage error.
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : USAGE;
    const command = argv[2] && !argv[2].startsWith('-') ? ` ${argv[2]}` : '';
    process.stderr.write(`taskmaster${command}: ${err instanceof Error ? err.message : String(err)}\n`);
    return err instanceof TaskmasterError && err.code === 'EVALIDATION' ? USAGE : 1;
  }
  return code;
}

/**
 * Output piped into a reader that stops early (`taskmaster ls | head`): the write fails with EPIPE.
 * That is the reader's choice, not an error: end quietly, as `cat` does.
 */
function quietOnClosedPipe(): void {
  for (const stream of [process.stdout, process.stderr]) {
    if (stream.listeners('error').some((l) => (l as { quietPipe?: boolean }).quietPipe)) continue;
    const onError = Object.assign(
      (err: NodeJS.ErrnoException) => {
        if (err.code === 'EPIPE') process.exit(0);
        throw err;
      },
      { quietPipe: true },
    );
    stream.on('error', onError);
  }
}

async function runMaster(flags: MasterFlags): Promise<number> {
  const cfg = masterConfig(flags);
  const log = logger(cfg.log, 'master');
  const signalled = watchSignals((m) => log.info(m));
  let db: Database | null = null;
  let master: Master | null = null;
  const tlsFiles = cfg.tlsFiles;
  if (tlsFiles)
    onReload(() => {
      if (!master) return log.warn('SIGHUP before the master started: nothing reloaded');
      try {
        const { cert, key } = readTlsFiles(tlsFiles);
        log.info('TLS certificate reloaded', { ...master.setTls({ cert, key }) });
      } catch (err) {
        log.error('TLS certificate not reloaded; the previous one stays', {
          error: err instanceof Error ? err.message : String(err),
        });
      }
    });
  const stop = () =>
    shutdown([async () => void (await master?.close()), async () => void (await db?.stop())], (m) =>
      log.warn(m),
    );
  const started = (async () => {
    let mongoUrl = cfg.options.mongoUrl;
    if (!mongoUrl) {
      db = await resolveDatabase({ dataDir: cfg.dataDir, log: (m) => log.info(m) });
      mongoUrl = db.url;
      log.info('database ready', describeDatabase(db));
    }
    master = new Master({
      ...cfg.options,
      mongoUrl,
      dbName: databaseName(mongoUrl, cfg.options.dbName),
      logger: log,
    });
    await master.start();
  })();
  try {
    if ((await Promise.race([started.then(() => 'started' as const), signalled])) !== 'started') {
      // A signal during start-up: let the start finish or fail, then stop what did start.
      await started.catch(() => undefined);
      return await stop();
    }
  } catch (err) {
    await stop();
    throw err;
  }
  // A master that loses its lease stands by (and may be elected again): it runs until a signal.
  await signalled;
  return stop();
}

interface FeedOutputFlags {
  wait?: boolean;
  json?: boolean;
  out?: string;
  quiet?: boolean;
}

interface DiscoveryFlags {
  discover?: boolean;
  tracker?: string;
  discoveryPort?: string;
}

/** `--discover` (UDP announcements) or `--tracker URL`, else the configured masters. */
async function locateMaster(
  flags: DiscoveryFlags,
  configured: string | string[] | undefined,
  token?: string,
  ca?: string | string[],
): Promise<string | string[] | undefined> {
  const port = flags.discoveryPort === undefined ? undefined : Number(flags.discoveryPort);
  if (port !== undefined && !(Number.isInteger(port) && port > 0 && port < 65536)) {
    throw new TaskmasterError(
      'EVALIDATION',
      `--discovery-port: must be an integer between 1 and 65535 (got "${flags.discoveryPort}")`,
    );
  }
  if (flags.discover) return discoverMaster({ port });
  if (flags.tracker) return masterFromTracker(flags.tracker, token, undefined, ca);
  return configured;
}

async function runRunner(flags: RunnerFlags & DiscoveryFlags): Promise<number> {
  const cfg = runnerConfig(flags);
  const log = logger(cfg.log, 'runner');
  const signalled = watchSignals((m) => log.info(m));
  const master = await locateMaster(flags, cfg.options.master, cfg.options.token, cfg.options.ca);
  if (master !== cfg.options.master) log.info('found a master', { master });
  const runner = new Runner({ ...cfg.options, master, logger: log });
  const stop = () => shutdown([() => runner.shutdown()], (m) => log.warn(m));
  // start() waits for the master's first acknowledgement; a signal before that still stops cleanly.
  const started = runner.start().then(() => 'started' as const);
  try {
    if ((await Promise.race([started, signalled])) !== 'started') return await stop();
  } catch (err) {
    await stop();
    throw err;
  }
  log.info('runner ready', {
    runnerId: runner.runnerId,
    master: runner.options.master,
    tasks: runner.options.tasks,
    workers: runner.options.workers,
    slots: runner.options.slots,
  });
  await signalled;
  return stop();
}

async function runDb(flags: { port?: string; data?: string; synchronous?: string }): Promise<number> {
  const { port, data, synchronous } = readSettings('db', DB_SETTINGS, flags, process.env);
  const log = (m: string) => void process.stderr.write(`${m}\n`);
  const signalled = watchSignals(log);
  const db = await startEmbeddedDatabase({ port, dataDir: data, log, synchronous });
  // The only line on stdout, so a script can wait for it and take the URL.
  process.stdout.write(`MONGO_URL=${db.url}\n`);
  log(`${databaseLine(db)}; Ctrl-C stops it`);
  await signalled;
  return shutdown([() => db.stop()], log);
}

/**
 * The `taskmaster` command line: thin — parses flags (commander), builds each role's options through
 * its config module, and calls the role's start function.
 */
import path from 'node:path';
import { Command, CommanderError, Option } from 'commander';
import { createLogger, type LogFormat, type Logger } from '../common/logger';
import { feed } from '../feeder/feed-cli';
import { masterConfig } from '../master/config';
import { Master } from '../master/master';
import { resolveDatabase, startEmbeddedDatabase } from '../models/database';
import { runnerOptionsFromEnv } from '../runner/config';
import { Runner } from '../runner/runner';
import { runDemo } from './demo';
import { onShutdown, untilSignal } from './signals';

const DEFAULT_MASTER = 'http://127.0.0.1:3232';

interface LogFlags {
  logFormat?: LogFormat;
  logLevel?: string;
}

function logger(flags: LogFlags, role: string, stderr = false): Logger {
  const env = process.env.TASKMASTER_LOG_FORMAT;
  const format = flags.logFormat ?? (env === 'json' || env === 'pretty' ? env : undefined);
  return createLogger({ format, level: flags.logLevel ?? process.env.TASKMASTER_LOG_LEVEL, meta: { role }, stderr });
}

const logOptions = (cmd: Command) =>
  cmd
    .addOption(new Option('--log-format <format>', 'pretty or json (default: pretty on a terminal)').choices(['pretty', 'json']))
    .option('--log-level <level>', 'error, warn, info or debug (default: info)');

const collect = (v: string, prev: string[] = []) => [...prev, v];

function intFlag(name: string, min: number) {
  return (v: string) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new CommanderError(2, 'taskmaster.invalidArgument', `${name}: must be an integer >= ${min} (got "${v}")`);
    return n;
  };
}

export async function main(argv: string[]): Promise<number> {
  let code = 0;
  const program = new Command()
    .name('taskmaster')
    .description('Distributed task master: a master, runners on many servers, and feeders.')
    .exitOverride()
    .showHelpAfterError();

  logOptions(
    program
      .command('master')
      .description('start the master (Socket.IO and HTTP on one port)')
      .option('--port <n>', 'port (env TASKMASTER_PORT, default 3232; 0 picks one)')
      .option('--host <addr>', 'address to listen on (env TASKMASTER_HOST, default 127.0.0.1)')
      .option('--token <secret>', 'token runners and feeders must present (env TASKMASTER_TOKEN)')
      .option('--insecure', 'allow a non-loopback address without a token')
      .option('--mongo-url <url>', 'MongoDB URL (env MONGO_URL; default: start the embedded database)')
      .option('--db <name>', 'database name (default: the URL\'s, else taskmaster)')
      .option('--max-attempts <n>', 'attempts per task (default 3)')
      .option('--queue-limit <n>', 'waiting tasks allowed before adds are refused with EQUEUEFULL (env TASKMASTER_QUEUE_LIMIT)')
      .option('--sacred-guarantees', 'keep priority slot guarantees strictly')
      .option('--hold-similar-work', 'run one task per key at a time; the others get its outcome'),
  ).action(async (flags: Parameters<typeof masterConfig>[0] & LogFlags) => {
    const log = logger(flags, 'master');
    const cfg = masterConfig(flags);
    let stopDb: () => Promise<void> = async () => undefined;
    let mongoUrl = cfg.mongoUrl;
    if (!mongoUrl) {
      const db = await resolveDatabase({ log: (m) => log.info(m) });
      mongoUrl = db.url;
      stopDb = () => db.stop();
      log.info('using the embedded database', { kind: db.kind, url: db.url });
    }
    const master = new Master({ ...cfg, mongoUrl, dbName: cfg.dbName ?? (new URL(mongoUrl).pathname.length > 1 ? undefined : 'taskmaster'), logger: log });
    await master.start();
    onShutdown(async () => {
      await master.close();
      await stopDb();
    }, (m) => log.info(m));
    await new Promise(() => undefined); // runs until a signal
  });

  logOptions(
    program
      .command('runner')
      .description('start a runner: connects to the master and runs task modules in child processes')
      .option('--master <url>', `master URL (env TASKMASTER_MASTER, default ${DEFAULT_MASTER})`)
      .option('--tasks <dir>', 'task folder, searched in order; repeatable (env TASKMASTER_TASKS, default ./tasks)', collect)
      .option('--slots <n>', 'tasks run at once (default: workers)', intFlag('--slots', 1))
      .option('--workers <n>', 'child processes (default: CPU cores)', intFlag('--workers', 1))
      .option('--priority-slots <json>', 'guaranteed slots per priority range, e.g. \'{"1":30,"2":20}\'')
      .option('--token <secret>', 'token for the master (env TASKMASTER_TOKEN)')
      .option('--data <json>', 'data announced to the master, e.g. \'{"gpu":true}\'')
      .option('--runner-id <id>', 'stable id across reconnects (default: host-pid-random)')
      .option('--answer-threshold <n>', 'results batched before answering the master (default 1)', intFlag('--answer-threshold', 1)),
  ).action(async (flags: Record<string, unknown> & LogFlags) => {
    const log = logger(flags, 'runner');
    const json = (name: string, v: unknown) => {
      if (v === undefined) return undefined;
      try {
        return JSON.parse(String(v)) as Record<string, number>;
      } catch {
        throw new Error(`${name}: not valid JSON (got ${String(v)})`);
      }
    };
    const env = runnerOptionsFromEnv();
    const runner = new Runner({
      ...env,
      master: (flags.master as string | undefined) ?? env.master ?? DEFAULT_MASTER,
      tasks: ((flags.tasks as string[] | undefined) ?? env.tasks ?? ['tasks']).map((d) => path.resolve(d)),
      slots: (flags.slots as number | undefined) ?? env.slots,
      workers: (flags.workers as number | undefined) ?? env.workers,
      prioritySlots: json('--priority-slots', flags.prioritySlots),
      token: (flags.token as string | undefined) ?? env.token,
      data: json('--data', flags.data),
      runnerId: (flags.runnerId as string | undefined) ?? env.runnerId,
      answerThreshold: flags.answerThreshold as number | undefined,
      logger: log,
    });
    await runner.start();
    log.info('runner ready', { runnerId: runner.runnerId });
    onShutdown(() => runner.close(), (m) => log.info(m));
    await new Promise(() => undefined);
  });

  logOptions(
    program
      .command('feed')
      .description('add a batch (a JSON array, or NDJSON; - reads stdin)')
      .argument('<file>', 'batch file')
      .option('--master <url>', `master URL (env TASKMASTER_MASTER, default ${DEFAULT_MASTER})`)
      .option('--token <secret>', 'token for the master (env TASKMASTER_TOKEN)')
      .option('--batch <name>', 'batch name')
      .option('--wait', 'wait for every task, with a progress bar, then print a summary')
      .option('--json', 'print results as JSON'),
  ).action(async (file: string, flags: { master?: string; token?: string; batch?: string; wait?: boolean; json?: boolean } & LogFlags) => {
    code = await feed(file, {
      master: flags.master ?? process.env.TASKMASTER_MASTER ?? DEFAULT_MASTER,
      token: flags.token ?? (process.env.TASKMASTER_TOKEN || undefined),
      batch: flags.batch,
      wait: flags.wait,
      json: flags.json,
      logger: logger({ logLevel: 'warn', ...flags }, 'feeder', true),
    });
  });

  program
    .command('db')
    .description('start the embedded database in the foreground and print MONGO_URL=<url>')
    .option('--port <n>', 'port (default: a free one)', intFlag('--port', 0))
    .option('--data <dir>', 'data folder (default .cache/db)')
    .action(async (flags: { port?: number; data?: string }) => {
      const db = await startEmbeddedDatabase({ port: flags.port, dataDir: flags.data, log: (m) => process.stderr.write(`${m}\n`) });
      process.stdout.write(`MONGO_URL=${db.url}\n`);
      await untilSignal();
      await db.stop();
    });

  logOptions(
    program.command('demo').description('embedded database, a master, a runner and the example batch from tasks/'),
  ).action(async (flags: LogFlags) => {
    code = await runDemo({ logger: logger({ logLevel: 'warn', ...flags }, 'demo', true) });
  });

  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      return err.exitCode === 0 ? 0 : 2; // --help and --version exit 0; usage errors 2
    }
    throw err;
  }
  return code;
}

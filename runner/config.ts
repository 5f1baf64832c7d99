/**
 * Turns the runner's options (from code, flags or the environment) into one validated, complete set.
 * Validation happens once, here, so a typo fails start-up with the option's name instead of surfacing
 * later as odd behaviour.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import { silentLogger, type Logger } from '../common/logger';
import { masterUrls } from '../common/master-urls';
import {
  CA_SETTING,
  LOG_SETTINGS,
  integer,
  jsonObject,
  nonEmpty,
  readSettings,
  type LogSettings,
} from '../common/settings';
import { formatIssues, issueText } from '../protocol/issues';
import { MAX_TIMER_MS, runnerDataSchema } from '../protocol/schemas';
import { RUNNER_DEFAULTS, type RunnerOptions } from './options';

type Unset =
  | 'master'
  | 'token'
  | 'ca'
  | 'prioritySlots'
  | 'maxTasksPerWorker'
  | 'maxWorkerMemoryMb'
  | 'maxResultBytes'
  | 'logger';
export type ResolvedRunnerOptions = Required<Omit<RunnerOptions, Unset>> & {
  /** The masters' URLs, in the order they are tried. */
  master: string[];
  token?: string;
  ca?: string | string[];
  prioritySlots?: Record<string, number>;
  maxTasksPerWorker?: number;
  maxWorkerMemoryMb?: number;
  maxResultBytes?: number;
  logger: Logger;
};

const int = (min: number, max = Number.MAX_SAFE_INTEGER) =>
  z.number().int('must be an integer').min(min).max(max);

const optionsSchema = z.object({
  master: masterUrls,
  tasks: z.array(z.string().min(1)).min(1, 'must name at least one folder'),
  slots: int(1, 100_000),
  prioritySlots: z.record(z.string().regex(/^-?\d+(\.\d+)?$/, 'keys must be priorities'), int(0)).optional(),
  workers: int(1, 1024),
  isolation: z.enum(['process', 'thread']),
  token: z.string().optional(),
  ca: z.union([z.string(), z.array(z.string())]).optional(),
  // The master refuses a hello with more (protocol/limits.ts): say so at start, not at every connect.
  data: runnerDataSchema,
  runnerId: z.string().min(1).max(200),
  answerThreshold: int(1),
  answerDelayMs: int(0, MAX_TIMER_MS),
  watch: z.boolean(),
  killGraceMs: int(0, MAX_TIMER_MS),
  shutdownGraceMs: int(0, MAX_TIMER_MS),
  ackTimeoutMs: int(1, MAX_TIMER_MS),
  reconnectDelayMs: int(1, MAX_TIMER_MS),
  reconnectDelayMaxMs: int(1, MAX_TIMER_MS),
  startTimeoutMs: int(0, MAX_TIMER_MS),
  closeTimeoutMs: int(0, MAX_TIMER_MS),
  execArgv: z.array(z.string()),
  orphanWatchdog: z.boolean(),
  maxTasksPerWorker: int(1).optional(),
  maxWorkerMemoryMb: int(1).optional(),
  allowExec: z.array(z.string().min(1, 'must not be empty')),
  maxResultBytes: int(1024).optional(),
  moduleStableMs: int(0, 60_000),
});

export function resolveRunnerOptions(opts: RunnerOptions): ResolvedRunnerOptions {
  const given = Object.fromEntries(Object.entries(opts).filter(([, v]) => v !== undefined)) as RunnerOptions;
  const { logger, ...rest } = given;
  const merged = {
    ...RUNNER_DEFAULTS,
    data: {},
    runnerId: defaultRunnerId(),
    ...rest,
  };
  const withSlots = { ...merged, slots: merged.slots ?? merged.workers };
  const parsed = optionsSchema.safeParse(withSlots);
  if (!parsed.success) {
    throw new Error(`invalid runner options: ${issueText(formatIssues(parsed.error.issues))}`);
  }
  return { ...parsed.data, logger: logger ?? silentLogger() };
}

/** `<hostname>-<pid>-<random>`: unique per process, readable in the master's logs. */
export function defaultRunnerId(): string {
  return `${os.hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
}

/** The flags of `taskmaster runner`, as commander gives them (text until validated). */
export interface RunnerFlags {
  master?: string;
  tasks?: string[];
  slots?: string;
  workers?: string;
  isolation?: string;
  prioritySlots?: string;
  token?: string;
  ca?: string;
  data?: string;
  runnerId?: string;
  answerThreshold?: string;
  maxTasksPerWorker?: string;
  maxWorkerMemory?: string;
  maxResultBytes?: string;
  moduleStableMs?: string;
  shutdownGraceMs?: string;
  allowExec?: string;
  logFormat?: string;
  logLevel?: string;
}

export interface RunnerConfig {
  /** Only what flags or the environment gave; `resolveRunnerOptions` adds the defaults. */
  options: RunnerOptions;
  log: LogSettings;
}

/** Task folders, resolved against `cwd`; each must exist, so a typo fails at start-up instead of as EMODULE on every task. */
const taskFolders = (cwd: string) =>
  z
    .array(z.string().min(1, 'must not be empty'))
    .min(1, 'must name at least one folder')
    .transform((dirs) => dirs.map((d) => path.resolve(cwd, d)))
    .superRefine((dirs, ctx) =>
      dirs.forEach((d, i) => {
        if (!isDirectory(d)) ctx.addIssue({ code: 'custom', path: [i], message: `no such folder: ${d}` });
      }),
    );

const settings = (cwd: string) => ({
  master: { flag: '--master', env: 'TASKMASTER_MASTER', schema: masterUrls },
  tasks: {
    flag: '--tasks',
    env: 'TASKMASTER_TASKS',
    // A path list, like PATH: colon-separated (semicolon on Windows).
    fromEnv: (text: string) => text.split(path.delimiter).filter(Boolean),
    schema: taskFolders(cwd),
  },
  slots: { flag: '--slots', env: 'TASKMASTER_SLOTS', schema: integer(1, 100_000) },
  workers: { flag: '--workers', env: 'TASKMASTER_WORKERS', schema: integer(1, 1024) },
  isolation: {
    flag: '--isolation',
    env: 'TASKMASTER_ISOLATION',
    schema: z.enum(['process', 'thread'], { error: 'must be process or thread' }),
  },
  prioritySlots: {
    flag: '--priority-slots',
    schema: jsonObject(z.number().int('must be an integer').min(0, 'must be >= 0')).refine(
      (o) => Object.keys(o).every((k) => /^-?\d+(\.\d+)?$/.test(k)),
      'keys must be priorities, e.g. \'{"1":30,"2":20}\'',
    ),
  },
  token: { flag: '--token', env: 'TASKMASTER_TOKEN', schema: nonEmpty() },
  ...CA_SETTING,
  data: { flag: '--data', schema: jsonObject(z.unknown()) },
  runnerId: {
    flag: '--runner-id',
    env: 'TASKMASTER_RUNNER_ID',
    schema: z.string().min(1).max(200, 'must be at most 200 characters'),
  },
  answerThreshold: { flag: '--answer-threshold', schema: integer(1, 100_000) },
  maxTasksPerWorker: { flag: '--max-tasks-per-worker', schema: integer(1) },
  shutdownGraceMs: { flag: '--shutdown-grace-ms', schema: integer(0, MAX_TIMER_MS) },
  // Keyed as commander names the flag; it becomes the option `maxWorkerMemoryMb`.
  maxWorkerMemory: { flag: '--max-worker-memory', schema: integer(1) },
  maxResultBytes: { flag: '--max-result-bytes', schema: integer(1024) },
  moduleStableMs: { flag: '--module-stable-ms', schema: integer(0, 60_000) },
  allowExec: {
    flag: '--allow-exec',
    schema: z
      .string()
      .transform((text) => text.split(',').map((p) => p.trim()))
      .pipe(z.array(z.string().min(1, 'names programs separated by commas, e.g. node,/bin/echo'))),
  },
  ...LOG_SETTINGS,
});

/**
 * The runner's settings from flags and the environment (TASKMASTER_MASTER, TASKMASTER_TOKEN, TASKMASTER_CA,
 * TASKMASTER_TASKS, TASKMASTER_SLOTS, TASKMASTER_WORKERS, TASKMASTER_ISOLATION, TASKMASTER_RUNNER_ID, TASKMASTER_LOG_FORMAT,
 * TASKMASTER_LOG_LEVEL), read in this one place; flags win. Task folders are resolved against `cwd`.
 */
export function runnerConfig(
  flags: RunnerFlags = {},
  env: NodeJS.ProcessEnv = process.env,
  cwd: string = process.cwd(),
): RunnerConfig {
  const s = readSettings('runner', settings(cwd), { ...flags }, env);
  const { logFormat, logLevel, maxWorkerMemory, ...rest } = s;
  const options: RunnerOptions =
    maxWorkerMemory === undefined ? rest : { ...rest, maxWorkerMemoryMb: maxWorkerMemory };
  return { options, log: { format: logFormat, level: logLevel } };
}

/** The options the environment gives (see `runnerConfig`); flags given in code can be spread over them. */
export function runnerOptionsFromEnv(env: NodeJS.ProcessEnv = process.env): RunnerOptions {
  return runnerConfig({}, env).options;
}

function isDirectory(p: string): boolean {
  try {
    return fs.statSync(p).isDirectory();
  } catch {
    return false;
  }
}

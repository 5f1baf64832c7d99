/**
 * Turns the runner's options (from code, flags or the environment) into one validated, complete set.
 * Validation happens once, here, so a typo fails start-up with the option's name instead of surfacing
 * later as odd behaviour.
 */
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import { silentLogger, type Logger } from '../common/logger';
import { formatIssues } from '../protocol/schemas';
import { RUNNER_DEFAULTS, type RunnerOptions } from './options';

export type ResolvedRunnerOptions = Required<Omit<RunnerOptions, 'token' | 'prioritySlots' | 'logger'>> & {
  token?: string;
  prioritySlots?: Record<string, number>;
  logger: Logger;
};

const int = (min: number, max = Number.MAX_SAFE_INTEGER) =>
  z.number().int('must be an integer').min(min).max(max);

const optionsSchema = z.object({
  master: z.string().refine((s) => URL.canParse(s), 'must be a URL such as http://127.0.0.1:3232'),
  tasks: z.array(z.string().min(1)).min(1, 'must name at least one folder'),
  slots: int(1, 100_000),
  prioritySlots: z.record(z.string().regex(/^-?\d+(\.\d+)?$/, 'keys must be priorities'), int(0)).optional(),
  workers: int(1, 1024),
  token: z.string().optional(),
  data: z.record(z.string(), z.unknown()),
  runnerId: z.string().min(1).max(200),
  answerThreshold: int(1),
  answerDelayMs: int(0),
  watch: z.boolean(),
  killGraceMs: int(0),
  ackTimeoutMs: int(1),
  reconnectDelayMs: int(1),
  reconnectDelayMaxMs: int(1),
  startTimeoutMs: int(0),
  closeTimeoutMs: int(0),
  execArgv: z.array(z.string()),
  orphanWatchdog: z.boolean(),
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
    const lines = formatIssues(parsed.error.issues).map((i) => `${i.path}: ${i.message}`);
    throw new Error(`invalid runner options: ${lines.join('; ')}`);
  }
  return { ...parsed.data, logger: logger ?? silentLogger() };
}

/** `<hostname>-<pid>-<random>`: unique per process, readable in the master's logs. */
export function defaultRunnerId(): string {
  return `${os.hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
}

/**
 * Options from `TASKMASTER_*` variables (MASTER, TOKEN, TASKS as a path list, WORKERS, SLOTS,
 * RUNNER_ID); flags given on the command line should be spread over these.
 */
export function runnerOptionsFromEnv(env: NodeJS.ProcessEnv = process.env): RunnerOptions {
  const num = (v: string | undefined) => (v === undefined || v === '' ? undefined : Number(v));
  const out: RunnerOptions = {
    master: env.TASKMASTER_MASTER || undefined,
    token: env.TASKMASTER_TOKEN || undefined,
    tasks: env.TASKMASTER_TASKS ? env.TASKMASTER_TASKS.split(path.delimiter).filter(Boolean) : undefined,
    workers: num(env.TASKMASTER_WORKERS),
    slots: num(env.TASKMASTER_SLOTS),
    runnerId: env.TASKMASTER_RUNNER_ID || undefined,
  };
  return Object.fromEntries(Object.entries(out).filter(([, v]) => v !== undefined)) as RunnerOptions;
}

/**
 * The feed command's settings from flags and the environment (TASKMASTER_MASTER, TASKMASTER_TOKEN, TASKMASTER_CA,
 * TASKMASTER_LOG_FORMAT, TASKMASTER_LOG_LEVEL), read in this one place; flags win over the
 * environment, which wins over FEEDER_DEFAULTS.
 */
import { z } from 'zod';
import {
  CA_SETTING,
  LOG_SETTINGS,
  integer,
  nonEmpty,
  readSettings,
  type LogSettings,
} from '../common/settings';
import { masterUrls } from '../common/master-urls';
import { FEEDER_DEFAULTS, type FeederOptions } from './options';

/** The flags of `taskmaster feed`, as commander gives them (text until validated). */
export interface FeederFlags {
  master?: string;
  token?: string;
  ca?: string;
  batch?: string;
  onExisting?: string;
  connectTimeout?: string;
  logFormat?: string;
  logLevel?: string;
}

export interface FeederConfig {
  options: FeederOptions & { master: string[] };
  batch?: string;
  /** A task whose id is already stored: refuse the batch (default) or skip the task. */
  onExisting?: 'error' | 'skip';
  log: LogSettings;
}

/**
 * How long `taskmaster feed` waits for its master by default: longer than a library feeder (30 s), as
 * the command is often run right after `taskmaster master &`, whose first start builds and starts the
 * embedded database (1–2 min on a machine whose Go module cache is cold).
 */
export const FEED_CONNECT_TIMEOUT_MS = 5 * 60_000;

const SETTINGS = {
  master: { flag: '--master', env: 'TASKMASTER_MASTER', schema: masterUrls },
  token: { flag: '--token', env: 'TASKMASTER_TOKEN', schema: nonEmpty() },
  ...CA_SETTING,
  batch: {
    flag: '--batch',
    schema: z.string().min(1, 'must not be empty').max(200, 'must be at most 200 characters'),
  },
  onExisting: { flag: '--on-existing', schema: z.enum(['error', 'skip']) },
  connectTimeout: { flag: '--connect-timeout', schema: integer(1, 86_400_000) },
  ...LOG_SETTINGS,
};

export function feederConfig(flags: FeederFlags = {}, env: NodeJS.ProcessEnv = process.env): FeederConfig {
  const s = readSettings('feed', SETTINGS, { ...flags }, env);
  const options: FeederOptions & { master: string[] } = {
    master: s.master ?? ([] as string[]).concat(FEEDER_DEFAULTS.master),
  };
  if (s.token !== undefined) options.token = s.token;
  if (s.ca !== undefined) options.ca = s.ca;
  options.connectTimeoutMs = s.connectTimeout ?? FEED_CONNECT_TIMEOUT_MS;
  return {
    options,
    batch: s.batch,
    onExisting: s.onExisting,
    log: { format: s.logFormat, level: s.logLevel },
  };
}

/**
 * The runner's options: a documented interface with defaults (runner/config.ts turns flags and
 * environment into these).
 */
import os from 'node:os';
import type { Logger } from '../common/logger';

export interface RunnerOptions {
  /** Master URL. Default `http://127.0.0.1:3232`. */
  master?: string;
  /** Task folders, searched in order. Default `['tasks']` (relative to the working directory). */
  tasks?: string[];
  /** Tasks run at once. Default: the number of workers. */
  slots?: number;
  /** Child processes. Default: CPU cores. */
  workers?: number;
  /** Token for the master's handshake. */
  token?: string;
  /** Free-form data announced to the master. */
  data?: Record<string, unknown>;
  /** Stable id across reconnects. Default: `<hostname>-<pid>-<random>`. */
  runnerId?: string;
  /** Results kept before answering the master (proletariat's ANSWER_THRESHOLD); a partial batch is sent after `answerDelayMs`. Default 1. */
  answerThreshold?: number;
  /** Longest wait before a partial batch of results is sent. Default 5 ms. */
  answerDelayMs?: number;
  /** Watch task folders and reload changed modules. Default true. */
  watch?: boolean;
  logger?: Logger;
}

export const RUNNER_DEFAULTS = Object.freeze({
  master: 'http://127.0.0.1:3232',
  tasks: ['tasks'],
  workers: Math.max(1, os.availableParallelism?.() ?? os.cpus().length),
  answerThreshold: 1,
  answerDelayMs: 5,
  watch: true,
});

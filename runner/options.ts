/**
 * The runner's options: a documented interface with defaults (runner/config.ts turns flags and
 * environment into these).
 */
import os from 'node:os';
import type { Logger } from '../common/logger';
import { ACK_TIMEOUT_MS } from '../protocol/events';
import type { Isolation } from './worker-host';

export interface RunnerOptions {
  /**
   * Master URL, or several (an active master and its standbys): a list, or comma-separated URLs. The
   * runner follows a standby to the active master and tries the others when it loses it. Default
   * `http://127.0.0.1:3232`.
   */
  master?: string | string[];
  /** Task folders, searched in order. Default `['tasks']` (relative to the working directory). */
  tasks?: string[];
  /** Tasks run at once. Default: the number of workers. */
  slots?: number;
  /** Slots guaranteed per priority range, announced to the master, e.g. `{ '1': 30, '2': 20 }`. Default none. */
  prioritySlots?: Record<string, number>;
  /** Child processes (or threads, with `isolation: 'thread'`). Default: CPU cores. */
  workers?: number;
  /**
   * What a worker is: `process`, a child process of its own (the default), or `thread`, a worker
   * thread in the runner's process: cheaper to start and to talk to, but a native crash or an
   * exhausted heap of the process takes the runner down, and memory and the process are shared (see
   * docs/runners.md).
   */
  isolation?: Isolation;
  /** Token for the master's handshake. */
  token?: string;
  /** CA certificates (PEM) to verify an https master with, instead of the system's: a private CA. Default none. */
  ca?: string | string[];
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
  /** After a cancel or run timeout, how long a task may take to stop before its child is killed. Default 1000 ms. */
  killGraceMs?: number;
  /** On shutdown (SIGTERM/SIGINT), how long running tasks may finish before they are given back to the master. Default 10000 ms. */
  shutdownGraceMs?: number;
  /** Wait for each acknowledgement from the master (hello, results, tasks:add). Default 30 000 ms. */
  ackTimeoutMs?: number;
  /** First reconnect delay; it doubles with jitter up to `reconnectDelayMaxMs`. Default 250 ms. */
  reconnectDelayMs?: number;
  /** Longest reconnect delay. Default 5000 ms. */
  reconnectDelayMaxMs?: number;
  /** `start()` fails if the master has not acknowledged the hello by then; 0 waits forever. Default 0. */
  startTimeoutMs?: number;
  /** On `close()`, how long to wait for the master to acknowledge results still in the outbox. Default 2000 ms. */
  closeTimeoutMs?: number;
  /** Extra Node flags for the child processes, e.g. `['--max-old-space-size=512']`. Default none. */
  execArgv?: string[];
  /** Retire a child process after it has finished this many tasks (Argon's `-r`); a fresh one takes its place. Default: unlimited. */
  maxTasksPerWorker?: number;
  /**
   * Retire a child process whose resident memory, measured as each task finishes, is above this many
   * MB, so one task's large allocation does not stay with the child for good. Default 1024.
   */
  maxWorkerMemoryMb?: number;
  /**
   * Programs the built-in `exec` task may run, matched exactly as a task names them (`node` does not
   * allow `/usr/bin/node`); `shell: true` also needs `sh`. Default none: exec is off.
   */
  allowExec?: string[];
  /**
   * Largest result (as JSON) a task may report; a larger one fails its attempt with ETOOLARGE, not
   * retried. A result must fit in one message to the master: its `maxMessageBytes` (told in its hello
   * reply) less 16 KiB of envelope caps this. Default: that cap (1,032,192 bytes with the master's
   * default message limit).
   */
  maxResultBytes?: number;
  /**
   * A module file changed less than this long ago is read only once it has stayed unchanged this
   * long, so a file caught half-written is never loaded. Default 200 ms.
   */
  moduleStableMs?: number;
  /** A thread in each child that kills it if the runner dies without cleaning up (about 10 MB per child). Default true. */
  orphanWatchdog?: boolean;
  logger?: Logger;
}

export const RUNNER_DEFAULTS = Object.freeze({
  master: 'http://127.0.0.1:3232',
  tasks: ['tasks'],
  workers: Math.max(1, os.availableParallelism?.() ?? os.cpus().length),
  isolation: 'process' as Isolation,
  answerThreshold: 1,
  answerDelayMs: 5,
  watch: true,
  killGraceMs: 1000,
  shutdownGraceMs: 10_000,
  ackTimeoutMs: ACK_TIMEOUT_MS,
  reconnectDelayMs: 250,
  reconnectDelayMaxMs: 5000,
  startTimeoutMs: 0,
  closeTimeoutMs: 2000,
  execArgv: [] as string[],
  orphanWatchdog: true,
  allowExec: [] as string[],
  maxWorkerMemoryMb: 1024,
  moduleStableMs: 200,
});

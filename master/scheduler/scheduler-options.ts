/**
 * What the scheduler is built with: the master passes its options (master/options.ts) through, and
 * tests build one directly. Policies read what they need from here (`PolicyContext.opts`).
 */
import type { Logger } from '../../common/logger';
import type { RunnerSelector } from './policies/selection';
import type { Backoff } from '../task-record';

/** Chooses the runner for a new affinity key among the available ones (sorted ids). */
export type Allocator = (key: string, runnerIds: string[]) => string | undefined;

export interface SchedulerOptions {
  maxAttempts: number;
  recoveryGraceMs: number;
  disconnectGraceMs: number;
  /** Final outcomes kept in memory for watchers, dependency checks and dependents' results. */
  finalCacheSize: number;
  /**
   * Largest payload of dependency results one assignment carries (`this.dependencies`), as JSON; the
   * results beyond it are left out, named. Default 256 KB (`DEFAULT_MAX_DEPENDENCY_BYTES`).
   */
  maxDependencyBytes?: number;
  selectRunner?: RunnerSelector;
  /** Largest task, as JSON, an add accepts (EVALIDATION). Default: unlimited. */
  maxTaskBytes?: number;
  /** Waiting + ready tasks allowed at once; an add beyond it is refused with EQUEUEFULL. */
  queueLimit: number;
  /** Bytes of the tasks held in memory (not final) allowed at once; an add beyond it is refused with EQUEUEFULL. */
  queueLimitBytes: number;
  /** Tasks of adds not durable yet allowed at once; an add beyond it is refused with EQUEUEFULL. */
  writeBacklogLimit?: number;
  /** Run one task per `key` at a time; the others are parked behind it and get its outcome. */
  holdSimilarWork: boolean;
  /** Chooses the runner for a new affinity key among the available ones (sorted ids). Default: hash of the key. */
  allocate?: Allocator;
  /** Delay before a retry unless the task says otherwise. */
  retryBackoff: Backoff;
  /** How often timeouts are checked. */
  timeoutSweepMs: number;
  /** Wait before distributing after a change, to gather more changes into one pass (0: next tick). */
  distributeDelayMs: number;
  /** The run timeout of an attempt whose task sets none. Default: none (it may run forever). */
  defaultRunTimeout?: number;
  /**
   * How long past its run timeout an attempt's result may take before the master takes the attempt
   * back itself (ETO, as the runner would have reported it). Default 30000 ms.
   */
  runTimeoutGraceMs?: number;
  logger: Logger;
}

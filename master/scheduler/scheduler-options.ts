/**
 * What the scheduler is built with: the master passes its options (master/options.ts) through, and
 * tests build one directly. Policies read what they need from here (`PolicyContext.opts`).
 */
import type { Logger } from '../../common/logger';
import type { DefaultsOf, ValuesOf } from '../../common/settings';
import type { SCHEDULER_OPTIONS } from './options';

/** Chooses the runner for a new affinity key among the available ones (sorted ids). */
type Declared = typeof SCHEDULER_OPTIONS;

export type Allocator = (key: string, runnerIds: string[]) => string | undefined;

/**
 * Every option declared in master/scheduler/options.ts (one declaration each: type, default, flag,
 * documentation), those with a default required, plus what only code passes.
 */
export type SchedulerOptions = ValuesOf<Declared> &
  DefaultsOf<Declared> & {
    /** Final outcomes kept in memory for watchers, dependency checks and dependents' results. */
    finalCacheSize: number;
    logger: Logger;
  };

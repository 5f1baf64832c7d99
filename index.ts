/**
 * The package's API. Feeders: `Feeder` and `task`; task modules: `defineTask` and `TaskContext`
 * (also light on their own as `taskmaster-distributed/task`); embedding: `Master` and `Runner`.
 */
export {
  Feeder,
  type AddOptions,
  type AddedBatch,
  type FeederEvents,
  type WorkOptions,
} from './feeder/feeder';
export type { FeederOptions } from './feeder/options';
export { task, type TypedTask } from './feeder/task';
export {
  defineTask,
  type ParamsOf,
  type ResultOf,
  type TaskDefinition,
  type TaskOf,
} from './runner/define-task';
export type { TaskContext, TaskLog } from './runner/task-context';
export { Master } from './master/master';
export type { MasterOptions } from './master/options';
export { Runner, type RunnerEvents } from './runner/runner';
export type { RunnerOptions } from './runner/options';
export { createLogger, type Logger, type LoggerOptions } from './common/logger';
export { TaskmasterError, ERROR_CODES, type ErrorCode, type WireError } from './protocol/errors';
export { TASK_STATES, FINAL_STATES, type TaskState } from './protocol/states';
export type { TaskInput, TaskOutcome, TaskRef } from './protocol/schemas';
export type { ScheduleInput, ScheduleView } from './protocol/schedules';

/**
 * The typed task-module contract. `defineTask` returns its function unchanged — the runner calls it
 * with the task's `params` as arguments and the task context as `this` — and exists for the types:
 * inside it `this` is a `TaskContext`, and `typeof` the module tells a feeder the module's parameter
 * and result types (see feeder/task.ts).
 *
 *   export default defineTask(function (ticker: string, days = 30) {
 *     this.progress(0.5);
 *     return { ticker, days };
 *   });
 *
 * Use a `function`, not an arrow: an arrow function has no `this`. `this.dependencies` holds the
 * results of the task's dependencies by id, typed `unknown`: narrow them where they are read.
 */
import type { TaskContext } from './task-context';

/** A task module's function: `params` in, the result (or a promise of it) out. */
export type TaskDefinition<P extends unknown[] = unknown[], R = unknown> = (
  this: TaskContext,
  ...params: P
) => R;

/**
 * Types a task module's function. Annotate its parameters (`name: string`, or a default `times = 1`):
 * they are what feeders must pass. The rest parameter typed `never` gives `this` its type without
 * imposing one on the parameters.
 */
export function defineTask<F extends (this: TaskContext, ...params: never) => unknown>(fn: F): F {
  if (typeof fn !== 'function') throw new TypeError('defineTask: expected a function');
  return fn;
}

/** The task function of a module type: its default export, or the module itself (`module.exports = fn`). */
export type TaskOf<M> = M extends { default: infer F } ? F : M;

/** The parameters a module's task takes, e.g. `ParamsOf<typeof import('./tasks/analyze')>`. */
export type ParamsOf<M> = TaskOf<M> extends (this: never, ...params: infer P) => unknown ? P : unknown[];

/** The result a module's task produces (a promise is unwrapped: feeders get the value). */
export type ResultOf<M> =
  TaskOf<M> extends (this: never, ...params: never[]) => infer R ? Awaited<R> : unknown;

export type { TaskContext, TaskLog } from './task-context';

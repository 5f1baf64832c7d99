/**
 * Type tests, checked by `npm run typecheck` (never run): a task module written with `defineTask` gets
 * `this` typed as the task context, and a feeder naming it with `task<typeof module>` must pass
 * parameters of the right types. Each `@ts-expect-error` fails the typecheck if the error goes away.
 */
import { defineTask, task, type ParamsOf, type ResultOf, type TaskContext } from '../../index';

export const greet = defineTask(async function (name: string, times = 1) {
  const progress: TaskContext['progress'] = this.progress;
  progress(0.5);
  this.log.info(`greeting ${name}`);
  if (this.signal.aborted) throw this.signal.reason;
  // @ts-expect-error `this` is a TaskContext: it has no such method
  this.finish();
  // @ts-expect-error progress takes a number
  this.progress('half');
  // Dependencies' results by id: typed, and read-only.
  const deps: Readonly<Record<string, unknown>> = this.dependencies;
  const leftOut: readonly string[] = this.dependenciesLeftOut;
  // @ts-expect-error the results are the master's, not the task's to change
  this.dependencies.other = 1;
  if (leftOut.length > Object.keys(deps).length) throw new Error('unreachable');
  return { greeting: `Hello, ${name}!`.repeat(times), attempt: this.attempt };
});

// A module object as `typeof import('./tasks/greet')` gives it, and one seen through ESM interop.
type GreetModule = { default: typeof greet };

export const ok = [
  task<typeof greet>('greet', 'world'),
  task<typeof greet>('greet', 'world', 2),
  task<GreetModule>('greet', 'world'),
  { ...task<GreetModule>('greet', 'world', 3), id: 'greet-3', priority: 2 },
];

// @ts-expect-error times must be a number
task<typeof greet>('greet', 'world', 'twice');
// @ts-expect-error name is required
task<GreetModule>('greet');
// @ts-expect-error one parameter too many
task<typeof greet>('greet', 'world', 2, true);

const params: ParamsOf<GreetModule> = ['world', 2];
const result: ResultOf<GreetModule> = { greeting: 'Hello, world!', attempt: 1 };
// @ts-expect-error the result has no such field
export const missing = result.rows;
export { params };

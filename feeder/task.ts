/**
 * A typed task for a feeder: `task<typeof import('./tasks/analyze')>('analyze', 'AAPL', 30)` checks the
 * params against the module's function at compile time and returns a plain task to add. Spread more
 * fields onto it: `{ ...task<Analyze>('analyze', 'AAPL'), id: 'analyze-AAPL', priority: 3 }`.
 *
 * Types only flow from the module: import it with `import type`, so the feeder does not load it.
 */
import type { ParamsOf } from '../runner/define-task';

export interface TypedTask<P extends unknown[]> {
  module: string;
  params: P;
}

export function task<M>(module: string, ...params: ParamsOf<M>): TypedTask<ParamsOf<M>> {
  return { module, params };
}

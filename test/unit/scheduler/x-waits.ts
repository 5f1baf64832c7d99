/**
 * A toy scheduling policy, as a newcomer would add one: no task whose module starts with `x` runs
 * before 5 s after it was added. One file; the list it joins is one line more.
 */
import type { TaskPolicy } from '../../../master/scheduler/policy';

export const X_WAIT_MS = 5000;

export const xWaits: TaskPolicy = {
  name: 'x-waits',
  scope: 'task',
  check: (_ctx, t, now) => (t.module.startsWith('x') && now < t.created + X_WAIT_MS ? 'X_TOO_EARLY' : null),
  describe: (_ctx, _code, t, now) =>
    `module ${t.module} starts with x: it waits ${t.created + X_WAIT_MS - now} ms more`,
  wakeAt: (_ctx, t) => t.created + X_WAIT_MS,
};

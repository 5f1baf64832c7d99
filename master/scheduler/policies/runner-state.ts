/**
 * A runner's state: a disconnected runner (in its grace period) and a draining one (an operator's
 * drain, or the runner shutting down) take no new work. Its hello, or an undrain, starts a pass.
 */
import type { RunnerPolicy } from '../policy';

export const connected: RunnerPolicy = {
  name: 'connected',
  scope: 'runner',
  check: (_ctx, _t, r) => (r.connected ? null : 'DISCONNECTED'),
  describe: (_ctx, _code, _t, r) => `runner ${r.id} is disconnected`,
};

export const draining: RunnerPolicy = {
  name: 'draining',
  scope: 'runner',
  check: (_ctx, _t, r) => (r.draining ? 'DRAINING' : null),
  describe: (_ctx, _code, _t, r) => `runner ${r.id} is draining: it takes no new work`,
};

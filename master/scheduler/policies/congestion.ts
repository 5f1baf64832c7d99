/**
 * Congestion: while the store's journal folder is too far behind (`folder.congested`, see
 * master/store/fold.ts), no new work is distributed, so the lag stays bounded under any load. The
 * folder calls back when it catches up (`onRelieved`), which starts a pass.
 */
import type { PassPolicy } from '../policy';

export const congestion: PassPolicy = {
  name: 'congestion',
  scope: 'pass',
  check: (ctx) => (ctx.folder.congested ? 'STORE_BEHIND' : null),
  describe: () => 'the database is behind: new work waits until it catches up',
};

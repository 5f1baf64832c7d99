/**
 * Signal handling for the CLI's long-running commands (master, runner, db), in one place.
 *
 * `watchSignals()` is called before anything starts, so a Ctrl-C during start-up (a database that
 * takes a while) still shuts down cleanly instead of killing the process halfway. The first SIGINT or
 * SIGTERM starts the shutdown; a second one exits at once. `onReload()` answers SIGHUP (a master with
 * TLS reads its certificate files again).
 */

/** Resolves on the first SIGINT/SIGTERM; later ones exit the process with 130. */
export function watchSignals(log: (msg: string) => void): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    let received = false;
    const handler = (signal: NodeJS.Signals) => {
      if (received) {
        log(`${signal} again: exiting now`);
        process.exit(130);
      }
      received = true;
      log(`${signal}: shutting down`);
      resolve(signal);
    };
    process.on('SIGINT', handler);
    process.on('SIGTERM', handler);
  });
}

/**
 * Calls `reload` on every SIGHUP instead of exiting (Node's default for SIGHUP). Only processes that
 * have something to reload install it.
 */
export function onReload(reload: () => void): void {
  process.on('SIGHUP', reload);
}

export interface ShutdownOptions {
  /** Longest time the steps may take before the process exits anyway. Default 20 000 ms. */
  graceMs?: number;
}

/**
 * Runs the shutdown steps in order (each even if an earlier one failed: the database is stopped even
 * when the master could not close) and returns the exit code: 0 if every step succeeded, else 1.
 */
export async function shutdown(
  steps: (() => Promise<void>)[],
  log: (msg: string) => void,
  { graceMs = 20_000 }: ShutdownOptions = {},
): Promise<number> {
  const force = setTimeout(() => {
    log(`shutdown still running after ${graceMs} ms: exiting`);
    process.exit(1);
  }, graceMs);
  force.unref();
  let code = 0;
  for (const step of steps) {
    try {
      await step();
    } catch (err) {
      log(`shutdown step failed: ${err instanceof Error ? err.message : String(err)}`);
      code = 1;
    }
  }
  clearTimeout(force);
  // Everything was closed; a handle some library forgot must not keep the process alive.
  setTimeout(() => process.exit(process.exitCode ?? code), 2000).unref();
  return code;
}

/**
 * What the benchmarks share: running their main function, and the command lines of the master and
 * runner processes they start (the CLI, with the no-op tasks of bench/tasks).
 */
import path from 'node:path';

const ROOT = path.resolve(__dirname, '..');
export const CLI = path.join(ROOT, 'bin', 'taskmaster.js');

/** `taskmaster master` on `port` and `mongoUrl`, logging at info, then `extra`. */
export function masterArgs(port: number, mongoUrl: string, extra: string[] = []): string[] {
  return [CLI, 'master', '--port', String(port), '--mongo-url', mongoUrl, '--log-level', 'info', ...extra];
}

/** `taskmaster runner` of bench/tasks with these workers and slots, logging at info, then `extra`. */
export function runnerArgs(
  masterUrl: string,
  workers: number,
  slots: number,
  extra: string[] = [],
): string[] {
  return [
    CLI,
    'runner',
    '--master',
    masterUrl,
    '--tasks',
    path.join(ROOT, 'bench', 'tasks'),
    '--workers',
    String(workers),
    '--slots',
    String(slots),
    '--log-level',
    'info',
    ...extra,
  ];
}

/** Runs a benchmark's main function: exit 0 when it resolves, 1 with the stack when it fails. */
export function runBench(main: () => Promise<void>): void {
  main().then(
    () => process.exit(0),
    (err: unknown) => {
      process.stderr.write(`bench failed: ${err instanceof Error ? err.stack : String(err)}\n`);
      process.exit(1);
    },
  );
}

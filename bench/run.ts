/**
 * What the benchmarks share: running their main function, their database, and the command lines of
 * the master and runner processes they start (the CLI, with the no-op tasks of bench/tasks).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { databaseLine, resolveDatabase, type Database } from '../db/server';

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

/**
 * The benchmark's database: `MONGO_URL`, else an embedded server on a temporary folder (removed when
 * the process exits, so measurements never mix with a master's data in the working directory). Says
 * on stderr where it is.
 */
export async function benchDatabase(): Promise<Database> {
  const log = (m: string) => void process.stderr.write(`${m}\n`);
  const dataDir = process.env.MONGO_URL
    ? undefined
    : fs.mkdtempSync(path.join(os.tmpdir(), 'taskmaster-bench-db-'));
  if (dataDir) process.on('exit', () => fs.rmSync(dataDir, { recursive: true, force: true }));
  const db = await resolveDatabase({ dataDir, log });
  log(`database: ${databaseLine(db)}${dataDir ? ' (removed at exit)' : ''}`);
  return db;
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

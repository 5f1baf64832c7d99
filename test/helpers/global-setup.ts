/**
 * Starts the one database server of a test run: `MONGO_URL` if set, else mongod, else FerretDB (see
 * db/server.ts), with a fresh data directory. Test files find its URL, the run id and the run's
 * folder in environment variables (run-state.ts) and make their databases on it (db.ts).
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { databaseLine, resolveDatabase, type Database } from '../../db/server';
import { TEST_MONGO_URL_ENV, TEST_RUN_DIR_ENV, TEST_RUN_ID_ENV } from './run-state';

export interface TestRun {
  db: Database;
  /** The server's data (unused on `MONGO_URL`). */
  dataDir: string;
  /** Notes of the run's test files (the databases they kept). */
  runDir: string;
  runId: string;
}

// globalSetup and globalTeardown run in the same context of jest's main process.
export const TEST_RUN = Symbol.for('taskmaster.testRun');

export default async function globalSetup(): Promise<void> {
  const log = (msg: string) => void process.stderr.write(`${msg}\n`);
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'taskmaster-test-db-'));
  const runDir = fs.mkdtempSync(path.join(os.tmpdir(), 'taskmaster-test-run-'));
  const runId = `${Date.now().toString(36).slice(-5)}${crypto.randomBytes(2).toString('hex')}`;
  const db = await resolveDatabase({ dataDir, log }).catch((err: unknown) => {
    fs.rmSync(dataDir, { recursive: true, force: true });
    fs.rmSync(runDir, { recursive: true, force: true });
    throw err;
  });
  // Jest starts its workers after globalSetup, from this process, so they inherit these variables
  // (and files run in-band read the same `process.env`).
  process.env[TEST_MONGO_URL_ENV] = db.url;
  process.env[TEST_RUN_ID_ENV] = runId;
  process.env[TEST_RUN_DIR_ENV] = runDir;
  (globalThis as Record<symbol, TestRun>)[TEST_RUN] = { db, dataDir, runDir, runId };
  log(`\ntest database: ${databaseLine(db)}`);
}

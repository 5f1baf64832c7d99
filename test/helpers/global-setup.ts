/**
 * Starts the one database server of a test run: `MONGO_URL` if set, else mongod, else FerretDB (see
 * db/server.ts), with a fresh data directory. Test files find its URL in
 * `TASKMASTER_TEST_MONGO_URL` and create their own databases on it (test/helpers/db.ts).
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { resolveDatabase, type Database } from '../../db/server';
import { TEST_MONGO_URL_ENV, TEST_RUN_ID_ENV } from './db';

export interface TestRun {
  db: Database;
  dataDir: string;
  runId: string;
}

// globalSetup and globalTeardown run in the same context of jest's main process.
export const TEST_RUN = Symbol.for('taskmaster.testRun');

export default async function globalSetup(): Promise<void> {
  const log = (msg: string) => void process.stderr.write(`${msg}\n`);
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'taskmaster-test-db-'));
  const runId = `${Date.now().toString(36).slice(-5)}${crypto.randomBytes(2).toString('hex')}`;
  const db = await resolveDatabase({ dataDir, log }).catch((err: unknown) => {
    fs.rmSync(dataDir, { recursive: true, force: true });
    throw err;
  });
  process.env[TEST_MONGO_URL_ENV] = db.url;
  process.env[TEST_RUN_ID_ENV] = runId;
  (globalThis as Record<symbol, TestRun>)[TEST_RUN] = { db, dataDir, runId };
  log(`\ntest database: ${db.kind} at ${db.kind === 'external' ? 'MONGO_URL' : db.url}`);
}

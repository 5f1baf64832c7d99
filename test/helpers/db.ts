/**
 * The one place test databases come from. Each test file works in databases of its own on the run's
 * server (started by globalSetup), so files run in parallel without seeing each other's tasks.
 *
 * Every name carries the run id and is recorded with the test that made it: the file's environment
 * (environment.ts) drops it when the file ends, or keeps it if that test failed (if the file's hooks
 * made it: if any test failed), and globalTeardown names what was kept. So nothing here drops.
 */
import crypto from 'node:crypto';
import path from 'node:path';
import type { Connection } from 'mongoose';
import { connectDatabase } from '../../models/connection';
import { FILE_STATE_KEY, TEST_MONGO_URL_ENV, TEST_RUN_ID_ENV, type FileState } from './run-state';

/** The URL of the run's database server, without a database name. */
export function testMongoUrl(): string {
  const url = process.env[TEST_MONGO_URL_ENV];
  if (!url)
    throw new Error(
      `${TEST_MONGO_URL_ENV} is not set: run the tests through jest (its globalSetup starts the database)`,
    );
  return url;
}

/**
 * A new database name of this run, `t_<label>_<run>_<random>`, from a label or a test file's path
 * (`__filename`), recorded for the file's environment to drop or keep. Kept to `[A-Za-z0-9_]` and
 * well under the 63 characters that both MongoDB and FerretDB accept.
 */
export function testDbName(fileOrLabel: string): string {
  const label = path
    .basename(fileOrLabel)
    .replace(/\.test\.[cm]?[jt]s$|\.[cm]?[jt]s$/, '')
    .replace(/[^A-Za-z0-9]+/g, '_')
    .slice(0, 24);
  const run = process.env[TEST_RUN_ID_ENV] ?? 'norun';
  const name = `t_${label}_${run}_${crypto.randomBytes(3).toString('hex')}`;
  const state = (globalThis as unknown as Record<string, FileState | undefined>)[FILE_STATE_KEY];
  if (!state)
    throw new Error(
      'no test environment: jest.config.js sets test/helpers/environment.ts, which drops databases',
    );
  state.databases.push({ name, madeBy: state.current });
  return name;
}

/** The run's server URL with `name` as its database, for processes that take a URL (the CLI). */
export function testDbUrl(name: string): string {
  const url = new URL(testMongoUrl());
  url.pathname = `/${name}`;
  return url.toString();
}

/** A mongoose connection to database `name`, with the task indexes created (models/connection.ts). */
export function connectTestDb(name: string): Promise<Connection> {
  return connectDatabase(testMongoUrl(), { dbName: name });
}

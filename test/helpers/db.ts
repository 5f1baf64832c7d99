/**
 * Each test file works in a database of its own on the run's server (started by globalSetup), so
 * files run in parallel without seeing each other's tasks.
 */
import crypto from 'node:crypto';
import path from 'node:path';
import mongoose, { type Connection } from 'mongoose';
import { connectDatabase } from '../../models/connection';

/**
 * Where globalSetup hands the server to test files. Jest starts its workers after globalSetup, from
 * the process globalSetup ran in, so they inherit these variables (and files run in-band read the
 * same `process.env`).
 */
export const TEST_MONGO_URL_ENV = 'TASKMASTER_TEST_MONGO_URL';
export const TEST_RUN_ID_ENV = 'TASKMASTER_TEST_RUN_ID';

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
 * A database name unique to this call and run: `t_<label>_<run>_<random>`, from a test file's path
 * (`__filename`) or a label. Kept to `[A-Za-z0-9_]` and well under the 63 characters that both
 * MongoDB and FerretDB accept. globalTeardown finds a run's databases by the `_<run>_` part.
 */
export function testDbName(fileOrLabel: string): string {
  const label = path
    .basename(fileOrLabel)
    .replace(/\.test\.[cm]?[jt]s$|\.[cm]?[jt]s$/, '')
    .replace(/[^A-Za-z0-9]+/g, '_')
    .slice(0, 24);
  const run = process.env[TEST_RUN_ID_ENV] ?? 'norun';
  return `t_${label}_${run}_${crypto.randomBytes(3).toString('hex')}`;
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

/** Drops a test database: by name, or through an open connection, which is then closed. */
export async function dropTestDb(target: string | Connection): Promise<void> {
  const conn =
    typeof target === 'string'
      ? await mongoose.createConnection(testMongoUrl(), { dbName: target }).asPromise()
      : target;
  try {
    await conn.dropDatabase();
  } finally {
    await conn.close();
  }
}

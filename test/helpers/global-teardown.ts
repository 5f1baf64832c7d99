/**
 * Stops the test run's database server and removes its data. On a server the run did not start
 * (`MONGO_URL`), drops the databases this run created instead, so repeated runs leave nothing behind.
 */
import fs from 'node:fs';
import mongoose from 'mongoose';
import { TEST_RUN, type TestRun } from './global-setup';

export default async function globalTeardown(): Promise<void> {
  const run = (globalThis as Record<symbol, TestRun | undefined>)[TEST_RUN];
  if (!run) return;
  if (run.db.kind === 'external') await dropRunDatabases(run.db.url, run.runId);
  await run.db.stop();
  fs.rmSync(run.dataDir, { recursive: true, force: true });
}

async function dropRunDatabases(url: string, runId: string): Promise<void> {
  const conn = await mongoose.createConnection(url, { serverSelectionTimeoutMS: 5000 }).asPromise();
  try {
    const { databases } = await conn.listDatabases();
    for (const { name } of databases) {
      if (name.includes(`_${runId}_`)) await conn.useDb(name).dropDatabase();
    }
  } finally {
    await conn.close();
  }
}

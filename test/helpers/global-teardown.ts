/**
 * Ends the test run: checks that its databases are gone, names those kept for failed tests, and
 * stops the server.
 *
 * The check: every database of the run still on the server must be one a file kept for a failed
 * test (environment.ts). Any other is a leak (a name made outside db.ts, or a process that wrote
 * after its file ended): it is dropped and the run fails naming it. On the run's own server every
 * database is the run's; on `MONGO_URL` only the names with the run id are.
 * Kept databases survive the run: on `MONGO_URL` they stay on the server; on the run's own FerretDB
 * its data directory is kept (one SQLite file per database) and its path printed.
 */
import fs from 'node:fs';
import path from 'node:path';
import mongoose from 'mongoose';
import { TEST_RUN, type TestRun } from './global-setup';
import { KEPT_FILE, type KeptDatabase } from './run-state';

const SYSTEM_DATABASES = new Set(['admin', 'config', 'local']);

export default async function globalTeardown(): Promise<void> {
  const run = (globalThis as Record<symbol, TestRun | undefined>)[TEST_RUN];
  if (!run) return;
  const log = (msg: string) => void process.stderr.write(`${msg}\n`);
  const kept = readKept(run.runDir);
  let leaked: string[] = [];
  try {
    leaked = await dropLeaks(run, new Set(kept.map((k) => k.name)));
  } finally {
    await run.db.stop();
    fs.rmSync(run.runDir, { recursive: true, force: true });
    const keepFiles = kept.length > 0 && run.db.kind !== 'external';
    if (!keepFiles) fs.rmSync(run.dataDir, { recursive: true, force: true });
  }
  if (kept.length > 0) {
    log(`\ndatabases kept for inspection (their tests failed):`);
    for (const k of kept) {
      const where = run.db.kind === 'external' ? 'on MONGO_URL' : path.join(run.dataDir, `${k.name}.sqlite`);
      log(`  ${k.name} (${where})\n    ${k.file}: ${k.failed.join('; ')}`);
    }
  }
  if (leaked.length > 0)
    throw new Error(
      `test databases left on the server that no failed test kept (dropped now): ${leaked.join(', ')}; ` +
        'name databases with testDbName (test/helpers/db.ts) and close what writes to them in the file',
    );
}

function readKept(runDir: string): KeptDatabase[] {
  const file = path.join(runDir, KEPT_FILE);
  if (!fs.existsSync(file)) return [];
  return fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as KeptDatabase);
}

/** Drops the run's databases that nothing kept and returns their names. */
async function dropLeaks(run: TestRun, kept: Set<string>): Promise<string[]> {
  const conn = await mongoose.createConnection(run.db.url, { serverSelectionTimeoutMS: 5000 }).asPromise();
  try {
    const { databases } = await conn.listDatabases();
    const ours = (name: string) =>
      run.db.kind === 'external' ? name.includes(`_${run.runId}_`) : !SYSTEM_DATABASES.has(name);
    const leaked = databases.map((d) => d.name).filter((name) => ours(name) && !kept.has(name));
    for (const name of leaked) await conn.useDb(name).dropDatabase();
    return leaked;
  } finally {
    await conn.close();
  }
}

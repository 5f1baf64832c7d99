/**
 * Opens a mongoose connection of its own (never the global one, so a process can hold several, as
 * tests do) and makes sure the indexes exist before anyone relies on them.
 */
import mongoose, { type Connection } from 'mongoose';
import { taskModel } from './task';
import { allocationModel } from './allocation';
import { journalModel } from './task-journal';
import { limitModel } from './limit';
import { scheduleModel } from './schedule';

export interface ConnectOptions {
  /** Database name; overrides the one in the URL. */
  dbName?: string;
  /** Give up connecting after this many ms. Default 10000. */
  timeoutMs?: number;
  /**
   * Create the collections and indexes now (default). A master leaves it to its election: a standby
   * writes nothing (master/master.ts).
   */
  ensure?: boolean;
}

export async function connectDatabase(url: string, opts: ConnectOptions = {}): Promise<Connection> {
  const conn = mongoose.createConnection(url, {
    dbName: opts.dbName,
    serverSelectionTimeoutMS: opts.timeoutMs ?? 10_000,
    autoIndex: false,
    autoCreate: false,
  });
  await conn.asPromise();
  if (opts.ensure !== false) await ensureCollections(conn);
  return conn;
}

/** SQLite under FerretDB: another connection holds the write lock for a moment. Worth a retry. */
const BUSY = /database is locked|SQLITE_BUSY/;

/**
 * Creates the collections and indexes the master relies on (at start, and after a database was
 * dropped). Retried for a few seconds while the database is busy (another master writing).
 */
export async function ensureCollections(conn: Connection): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await createCollections(conn);
    } catch (err) {
      if (attempt >= 20 || !BUSY.test(String((err as Error)?.message ?? err))) throw err;
      await new Promise((r) => setTimeout(r, 50 * Math.min(attempt + 1, 10)));
    }
  }
}

async function createCollections(conn: Connection): Promise<void> {
  await taskModel(conn).createIndexes();
  await allocationModel(conn).createIndexes();
  // No index to create, but the journal, schedules and limits should exist from the start, like the
  // others. Not `task_adds` (models/pending-add.ts): nothing writes it now; recovery only reads an old one.
  for (const model of [journalModel(conn), scheduleModel(conn), limitModel(conn)])
    await model.createCollection().catch((err: { code?: number }) => {
      if (err.code !== 48) throw err; // NamespaceExists
    });
}

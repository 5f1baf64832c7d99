/**
 * The `task_journal` collection: the adds and the changes of task states that are durable but not yet
 * in `tasks`.
 *
 * Why: an add must be durable before it is acknowledged and a change before it takes effect (an
 * assignment before it is sent, an outcome before it is delivered), and updating one `tasks` document
 * per change costs the database several times what inserting costs (FerretDB: ~0.13 ms of CPU per
 * update against ~0.035 ms per inserted document). So each write of the master inserts one journal
 * document holding the new tasks and every change of that write (as JSON text): one command, one
 * commit. `tasks` follows a moment later (master/store/fold.ts): a new task's document is inserted
 * once it is final or after a delay, so a task that finishes soon costs one insert and no update;
 * other changes become one update per task however often it changed meanwhile. A journal document is
 * deleted once everything in it is in `tasks`, so the journal stays as small as the work in flight. A
 * starting master applies what it finds here on top of `tasks`.
 *
 * `_id` is `<writer start id>-<sequence>`, unique across restarts.
 */
import { Schema, type Connection, type Model } from 'mongoose';
import type { TaskState } from '../protocol/states';

/** A task's whole state after a change (the fields the `tasks` document shows). */
export interface JournalChange {
  id: string;
  rev: number;
  state: TaskState;
  attempts: number;
  who?: string | null;
  when?: number | null;
  completed?: number | null;
  result?: unknown;
  error?: unknown;
  moduleHash?: string | null;
  uncounted?: number;
  /** Ready, waiting out a retry backoff until then (epoch ms). */
  retryAt?: number;
}

export interface JournalDoc {
  _id: string;
  at: number;
  /** How many changes `changes` holds. */
  n: number;
  /**
   * The changes as JSON text: one string is far cheaper for the database to store than an array of
   * documents (FerretDB encodes every field of every element), and JSON text holds any value.
   */
  changes: string;
  /**
   * The documents of the tasks added by this write, as a JSON array (absent when none): an add lives
   * whole in one journal document, so it is durable whole or not at all. The folder inserts them into
   * `tasks` once final or after a delay (master/store/fold.ts); a starting master inserts the ones
   * `tasks` lacks, with their latest state. Each document carries the `addKey` of its add, if any
   * (models/task.ts), so a retry of the add is recognised while its tasks are only here.
   */
  adds?: string;
  /** The lease epoch of the master that wrote it (master/lease.ts); absent before epochs. */
  epoch?: number;
}

export const journalSchema = new Schema<JournalDoc>(
  {
    _id: { type: String, required: true },
    at: { type: Number, required: true },
    n: { type: Number, required: true },
    changes: { type: String, required: true },
    adds: { type: String },
    epoch: { type: Number },
  },
  { collection: 'task_journal', versionKey: false },
);

export function journalModel(conn: Connection): Model<JournalDoc> {
  return (
    (conn.models.TaskJournal as Model<JournalDoc> | undefined) ??
    conn.model<JournalDoc>('TaskJournal', journalSchema)
  );
}

/**
 * The `task_journal` collection: the changes of task states that are durable but not yet in `tasks`.
 *
 * Why: a change must be durable before it takes effect (an assignment before it is sent, an outcome
 * before it is delivered), and updating one `tasks` document per change costs the database several
 * times what inserting costs (FerretDB: ~0.3 ms of CPU per update against ~0.05 ms per inserted
 * document). So each write of the master inserts one journal document holding every change of that
 * write (each change a full snapshot of the task's state, as JSON text), and `tasks` follows a moment later
 * (master/store-fold.ts), one update per task however often it changed meanwhile. A journal
 * document is deleted once every change in it is in `tasks`, so the journal stays as small as the
 * changes in flight. A starting master applies what it finds here on top of `tasks`.
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
}

export const journalSchema = new Schema<JournalDoc>(
  {
    _id: { type: String, required: true },
    at: { type: Number, required: true },
    n: { type: Number, required: true },
    changes: { type: String, required: true },
  },
  { collection: 'task_journal', versionKey: false },
);

export function journalModel(conn: Connection): Model<JournalDoc> {
  return (
    (conn.models.TaskJournal as Model<JournalDoc> | undefined) ??
    conn.model<JournalDoc>('TaskJournal', journalSchema)
  );
}

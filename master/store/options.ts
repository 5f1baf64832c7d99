/**
 * The store's options: where tasks are kept, how they are written and how long final ones stay.
 * Declared once (master/options.ts gathers them): flag, default and docs line come from here.
 */
import { z } from 'zod';
import { integer, option, retention } from '../../common/settings';

/** A MongoDB URL with its password, if any, replaced: it is shown, the password is not. */
export function withoutPassword(url: string): string {
  return url.replace(/^(mongodb(?:\+srv)?:\/\/[^:@/]*):[^@/]*@/, '$1:[redacted]@');
}

export const STORE_OPTIONS = {
  /** MongoDB URL (any MongoDB-wire server). `new Master()` requires it; the CLI finds one if not given. */
  mongoUrl: option(
    z
      .string()
      .regex(
        /^mongodb(\+srv)?:\/\/\S+$/,
        'must be a MongoDB URL such as mongodb://127.0.0.1:27017/taskmaster',
      ),
    {
      flag: '--mongo-url',
      arg: '<url>',
      env: 'MONGO_URL',
      defaultText: 'mongod on PATH, else the embedded FerretDB',
      group: 'database',
      doc: 'the MongoDB',
      redact: withoutPassword,
    },
  ),
  /** Database name; overrides the one in the URL. Unset: the URL's, or `taskmaster`. */
  dbName: option(
    z.string().regex(/^[^/\\. "$*<>:|?]{1,63}$/, 'must be a database name (no spaces, dots or slashes)'),
    {
      flag: '--db',
      arg: '<name>',
      defaultText: "the URL's, else `taskmaster`",
      group: 'database',
      doc: 'database name',
    },
  ),
  /** Largest number of documents in one insert command. */
  writeChunk: option(z.number(), {
    default: 1000,
    group: 'database',
    doc: 'largest number of documents in one insert command',
  }),
  /**
   * Changes waiting to be folded into `tasks` above which new assignments wait for the folder to
   * catch up, so `tasks` never falls far behind.
   */
  foldBacklogLimit: option(z.number(), {
    default: 50_000,
    group: 'database',
    doc: 'changes waiting to be folded into `tasks` above which new assignments wait',
  }),
  /**
   * How long a new task stays only in the journal before its document is inserted into `tasks`:
   * one that finishes within it is inserted once, final, and never updated (an update costs the
   * database several inserts). The API and the CLI read through the master, which inserts the
   * waiting ones first; only a reader of the database itself sees them late. Past 100,000 waiting,
   * the oldest are inserted at once.
   */
  insertDelayMs: option(integer(0, 3_600_000), {
    flag: '--insert-delay',
    arg: '<ms>',
    default: 60_000,
    group: 'database',
    doc: 'how long a new task waits in the journal before its `tasks` document is inserted',
  }),
  /** Remove final tasks this long after they finished; their ids can then be used again. `null` keeps them forever. */
  retainMs: option(retention(), {
    flag: '--retain',
    arg: '<duration>',
    env: 'TASKMASTER_RETAIN',
    default: 7 * 24 * 3600 * 1000,
    defaultText: '`7d`',
    group: 'retention',
    doc: 'remove final tasks this long after they finished (`12h`, `30m`, `forever`)',
  }),
  /** Keep at most this many final tasks, the newest (an alternative or addition to `retainMs`). */
  retainCount: option(integer(0, 1_000_000_000).nullable(), {
    flag: '--retain-count',
    arg: '<n>',
    default: null,
    defaultText: 'no limit',
    group: 'retention',
    doc: 'keep at most this many final tasks, the newest',
  }),
};

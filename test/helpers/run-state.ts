/**
 * What a test file and its environment share about the run: the databases the file made, which
 * test made each, and which tests failed. The environment (environment.ts) creates the record on
 * the file's global object and reads it when the file ends; the database helper (db.ts) adds to it.
 * globalSetup hands the server and the run's ids to every worker through environment variables.
 */

/** The URL of the run's database server, without a database name. */
export const TEST_MONGO_URL_ENV = 'TASKMASTER_TEST_MONGO_URL';
/** A short id of this run, part of every database name it makes. */
export const TEST_RUN_ID_ENV = 'TASKMASTER_TEST_RUN_ID';
/** A folder of this run where each file's environment notes the databases it kept. */
export const TEST_RUN_DIR_ENV = 'TASKMASTER_TEST_RUN_DIR';
/** The file in that folder: one JSON line per kept database ({@link KeptDatabase}). */
export const KEPT_FILE = 'kept-databases.jsonl';

/** The key of the record on a test file's global object. */
export const FILE_STATE_KEY = '__taskmasterTestFile';

export interface FileState {
  /** The full name of the test running now; undefined in hooks of the file and while it loads. */
  current?: string;
  /** Full names of the tests that failed, and `beforeAll`/`afterAll` hooks that failed. */
  failed: string[];
  /** Every database this file made, with the test that made it (none: the file's hooks made it). */
  databases: { name: string; madeBy?: string }[];
}

export interface KeptDatabase {
  name: string;
  file: string;
  /** The failed tests it is kept for. */
  failed: string[];
}

/**
 * One database server per data directory. A server started by db/server.ts holds
 * `<dataDir>/taskmaster-db.lock`, a small JSON file naming the process that started it, the server's
 * process and its URL. A second start on the same directory (another `taskmaster db`, a master without
 * `MONGO_URL`) is refused with a message naming the running one; a lock whose processes are all gone
 * (a SIGKILLed owner) is taken over.
 */
import fs from 'node:fs';
import path from 'node:path';

export const LOCK_FILE = 'taskmaster-db.lock';

export interface LockHolder {
  /** The process that started the server. */
  pid: number;
  /** The server process (FerretDB or mongod), once it runs. */
  serverPid?: number;
  kind?: string;
  url?: string;
  /** ISO time the lock was taken. */
  since: string;
}

export interface DataDirLock {
  /** Records the running server in the lock file. */
  update(fields: Pick<LockHolder, 'serverPid' | 'kind' | 'url'>): void;
  /** Removes the lock file if it is still this process's. Safe to call twice. */
  release(): void;
}

/** Thrown when the data directory is used by a running server. */
export class DataDirInUseError extends Error {
  constructor(
    readonly dataDir: string,
    readonly holder: LockHolder,
  ) {
    const server = holder.serverPid ? `pid ${holder.serverPid}` : 'starting';
    const where = holder.url ? ` at ${holder.url}` : '';
    super(
      `the data directory ${dataDir} is in use by a running ${holder.kind ?? 'database'} (${server}${where}, ` +
        `started by pid ${holder.pid} at ${holder.since}). Stop it first, ` +
        (holder.url ? `or use it with MONGO_URL=${holder.url}, ` : '') +
        'or choose another data directory.',
    );
    this.name = 'DataDirInUseError';
  }
}

/** Takes the lock of dataDir, or throws DataDirInUseError naming the server that holds it. */
export function lockDataDir(dataDir: string): DataDirLock {
  const file = path.join(dataDir, LOCK_FILE);
  let holder: LockHolder = { pid: process.pid, since: new Date().toISOString() };
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify(holder));
  try {
    for (let attempt = 0; ; attempt++) {
      try {
        // link() fails when the name exists and otherwise publishes the whole file at once: no reader
        // ever sees a half-written lock.
        fs.linkSync(tmp, file);
        break;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || attempt >= 3) throw err;
      }
      const other = readHolder(file);
      if (other && isHeld(other)) throw new DataDirInUseError(dataDir, other);
      // Every process it names is gone (a SIGKILLed owner): take it over. Two processes taking over
      // the same stale lock in the same instant could both succeed; this guards against a mistake,
      // not against a race.
      fs.rmSync(file, { force: true });
    }
  } finally {
    fs.rmSync(tmp, { force: true });
  }

  let released = false;
  return {
    update(fields) {
      if (released) return;
      holder = { ...holder, ...fields };
      const tmp = `${file}.${process.pid}.tmp`;
      fs.writeFileSync(tmp, JSON.stringify(holder));
      fs.renameSync(tmp, file);
    },
    release() {
      if (released) return;
      released = true;
      const current = readHolder(file);
      if (current?.pid === holder.pid && current.since === holder.since) fs.rmSync(file, { force: true });
    },
  };
}

/** The holder recorded in a lock file, or undefined when it is missing or unreadable. */
export function readHolder(file: string): LockHolder | undefined {
  try {
    const holder = JSON.parse(fs.readFileSync(file, 'utf8')) as LockHolder;
    return typeof holder.pid === 'number' ? holder : undefined;
  } catch {
    return undefined;
  }
}

/** A lock is held while any process it names is alive. */
function isHeld(holder: LockHolder): boolean {
  return [holder.pid, holder.serverPid].some((pid) => pid !== undefined && isAlive(pid));
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists but belongs to another user.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

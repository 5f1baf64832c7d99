/**
 * A database server of a test's own (not the run's shared one), for tests that stop, freeze or kill
 * the database under a running master and start it again on the same files and port. Its files go
 * when it stops, so the databases on it need no names of the run (db.ts is for the run's server).
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { startEmbeddedDatabase, type EmbeddedDatabase } from '../../db/server';
import { tempDir } from './cluster';

export interface OwnDatabase {
  /** `mongodb://127.0.0.1:PORT/NAME` */
  url(dbName: string): string;
  /** The server process itself (not its watchdog). */
  pid(): number;
  signal(sig: NodeJS.Signals): void;
  /** Starts the server again on the same files and port (after a kill). */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

/** `dataDir`: where its files go (a small file system, to fill its disk); default a new temporary folder. */
export async function ownDatabase(opts: { dataDir?: string } = {}): Promise<OwnDatabase> {
  const dataDir = opts.dataDir ?? tempDir('taskmaster-own-db-');
  let db: EmbeddedDatabase = await startEmbeddedDatabase({ dataDir, log: () => undefined });
  const port = db.port;
  const pid = (): number => {
    const lines = execFileSync('ps', ['-eo', 'pid=,args='], { encoding: 'utf8' }).split('\n');
    for (const line of lines) {
      const m = /^\s*(\d+)\s+(.*)$/.exec(line);
      if (!m || !m[2].includes(dataDir) || m[2].startsWith(process.execPath)) continue;
      return Number(m[1]);
    }
    throw new Error(`no database process on ${dataDir}`);
  };
  return {
    url: (name) => `mongodb://127.0.0.1:${port}/${name}`,
    pid,
    signal: (sig) => process.kill(pid(), sig),
    async restart() {
      await db.stop().catch(() => undefined);
      db = await startEmbeddedDatabase({ dataDir, port, log: () => undefined });
    },
    async stop() {
      await db.stop();
      fs.rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

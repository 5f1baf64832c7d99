/**
 * The embedded database as a user meets it first: its data goes to the working directory (never to
 * the package folder, which `npm ci` deletes) and every start says where it is; building FerretDB
 * says what it does, where and how long it takes; and one data directory serves one server at a time
 * (db/data-dir-lock.ts).
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { DataDirInUseError, LOCK_FILE, readHolder } from '../../db/data-dir-lock';
import { defaultDataDir, startEmbeddedDatabase } from '../../db/server';
import {
  FERRETDB_BIN,
  USUAL_BUILD_TIME,
  buildFerretDB,
  ferretdbBinPath,
  findOnPath,
  startProgress,
} from '../../db/ferretdb-build';
import { CACHE_DIR, PACKAGE_ROOT, cacheDir, isInstalled } from '../../db/package-root';
import { ROOT, spawnCli, spawnProc, tempDir, type Proc } from '../helpers/cluster';
import { eventually } from '../helpers/wait';

const isAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/** Resolves with the first `count` values `push` receives. */
function collect<T>(count: number, timeoutMs = 5000): { push: (v: T) => void; done: Promise<T[]> } {
  const seen: T[] = [];
  let resolve!: (v: T[]) => void;
  const done = new Promise<T[]>((r, reject) => {
    resolve = r;
    setTimeout(
      () => reject(new Error(`only ${seen.length} of ${count} progress updates came`)),
      timeoutMs,
    ).unref();
  });
  return {
    done,
    push(v) {
      seen.push(v);
      if (seen.length === count) resolve(seen);
    },
  };
}

describe('progress of a FerretDB build', () => {
  test('off a TTY, a line with the elapsed time and the usual duration comes at once and then every interval', async () => {
    const lines = collect<string>(3);
    const progress = startProgress('building FerretDB', { isTTY: false, write: lines.push, intervalMs: 20 });
    const got = await lines.done.finally(() => progress.stop());
    expect(got[0]).toBe(`building FerretDB: 0 s (${USUAL_BUILD_TIME})\n`);
    for (const line of got) {
      expect(line).toMatch(
        /^building FerretDB: \d+ s \(usually ~15 s with a warm Go module cache, 1–2 min cold\)\n$/,
      );
    }
  });

  test('on a TTY, one line is rewritten in place and cleared at the end', async () => {
    const writes = collect<string>(3);
    const progress = startProgress('building FerretDB', { isTTY: true, write: writes.push, intervalMs: 20 });
    const got = await writes.done;
    progress.stop();
    progress.stop();
    expect(got[0]).toBe(`building FerretDB: 0 s (${USUAL_BUILD_TIME})`);
    expect(got[1].startsWith(`\r\x1b[Kbuilding FerretDB: `)).toBe(true);
  });

  const hasGo = findOnPath('go') !== undefined;
  test(
    hasGo
      ? 'a build says what it builds, how long it usually takes, and how long it took'
      : 'a build without Go on PATH says how to get one',
    async () => {
      const lines: string[] = [];
      const progress: string[] = [];
      const build = buildFerretDB({
        variant: 'stock',
        force: true,
        log: (m) => lines.push(m),
        progress: { isTTY: false, write: (t) => progress.push(t) },
      });
      if (!hasGo) return expect(build).rejects.toThrow(/`go` is not on PATH/);
      await build;
      expect(progress[0]).toBe(
        `building FerretDB 1.24.2 (stock) into ${ferretdbBinPath('stock')}: 0 s (${USUAL_BUILD_TIME})\n`,
      );
      expect(ferretdbBinPath('stock')).toBe(path.join(CACHE_DIR, 'bin', 'ferretdb-1.24.2-stock'));
      expect(lines).toEqual([expect.stringMatching(/^built FerretDB in \d+ s: .*ferretdb-1\.24\.2-stock$/)]);
    },
    180_000,
  );
});

describe('where the data and the build are', () => {
  test('the default data folder is .taskmaster/db under the working directory, not the package folder', () => {
    const cwd = tempDir('cwd');
    try {
      expect(defaultDataDir(cwd)).toBe(path.join(cwd, '.taskmaster', 'db'));
      expect(defaultDataDir()).toBe(path.join(process.cwd(), '.taskmaster', 'db'));
      expect(defaultDataDir(cwd).startsWith(PACKAGE_ROOT)).toBe(false);
    } finally {
      fs.rmSync(cwd, { recursive: true, force: true });
    }
  });

  test("an installed package builds FerretDB into the user's cache, a clone into its own .cache, TASKMASTER_CACHE_DIR anywhere", () => {
    const installed = '/srv/app/node_modules/taskmaster-distributed';
    const home = '/home/ann';
    expect(isInstalled(installed)).toBe(true);
    expect(isInstalled('/src/taskmaster')).toBe(false);
    expect(cacheDir({}, installed, home)).toBe('/home/ann/.cache/taskmaster');
    expect(cacheDir({ XDG_CACHE_HOME: '/var/cache/ann' }, installed, home)).toBe('/var/cache/ann/taskmaster');
    // A relative XDG_CACHE_HOME is invalid (XDG base directory rule): ignored.
    expect(cacheDir({ XDG_CACHE_HOME: 'rel' }, installed, home)).toBe('/home/ann/.cache/taskmaster');
    expect(cacheDir({}, '/src/taskmaster', home)).toBe('/src/taskmaster/.cache');
    expect(cacheDir({ TASKMASTER_CACHE_DIR: '/opt/tm' }, installed, home)).toBe('/opt/tm');
    // This checkout is a clone: CI and .ci/run find the build in its .cache.
    expect(FERRETDB_BIN.startsWith(path.join(ROOT, '.cache', 'bin'))).toBe(
      process.env.TASKMASTER_CACHE_DIR === undefined,
    );
  });

  describe('taskmaster master without MONGO_URL', () => {
    let cwd: string;
    const procs: Proc[] = [];
    beforeEach(() => {
      cwd = tempDir('master-cwd');
    });
    afterEach(async () => {
      for (const p of procs.splice(0)) await p.kill();
      fs.rmSync(cwd, { recursive: true, force: true });
    });

    /** Starts `taskmaster master` in `cwd` on the embedded database; its 'database ready' line, parsed. */
    async function databaseReady(args: string[], env: Record<string, string> = {}) {
      const master = spawnProc(
        process.execPath,
        [path.join(ROOT, 'bin', 'taskmaster.js'), 'master', '--port', '0', ...args],
        { cwd, env: { MONGO_URL: '', TASKMASTER_DATA: '', ...env } },
      );
      procs.push(master);
      const line = await master.waitFor(/\{[^\n]*"message":"database ready"[^\n]*\}/, 60_000);
      await master.waitFor(/"message":"master listening"/, 60_000);
      return JSON.parse(line) as { kind: string; url: string; data: string; build?: string; mongod?: string };
    }

    test('keeps its data in ./.taskmaster/db of the working directory and says where the data and the build are', async () => {
      const ready = await databaseReady([]);
      expect(ready.data).toBe(path.join(fs.realpathSync(cwd), '.taskmaster', 'db'));
      expect(fs.existsSync(path.join(ready.data, LOCK_FILE))).toBe(true);
      if (ready.kind === 'ferretdb') expect(ready.build).toBe(FERRETDB_BIN);
      else expect(ready.mongod).toBe(findOnPath('mongod'));
      expect(ready.data.startsWith(PACKAGE_ROOT)).toBe(false);
    }, 90_000);

    test('TASKMASTER_DATA moves the data, and --data wins over it', async () => {
      const fromEnv = await databaseReady([], { TASKMASTER_DATA: 'env-db' });
      expect(fromEnv.data).toBe(path.join(fs.realpathSync(cwd), 'env-db'));
      await procs.splice(0)[0].kill();
      const fromFlag = await databaseReady(['--data', 'flag-db'], { TASKMASTER_DATA: 'env-db' });
      expect(fromFlag.data).toBe(path.join(fs.realpathSync(cwd), 'flag-db'));
      expect(fs.existsSync(path.join(cwd, 'flag-db', LOCK_FILE))).toBe(true);
      expect(fs.existsSync(path.join(cwd, '.taskmaster'))).toBe(false);
    }, 120_000);
  });

  test('taskmaster db keeps its data in ./.taskmaster/db of the working directory and says so', async () => {
    const cwd = tempDir('db-cwd');
    const db = spawnProc(process.execPath, [path.join(ROOT, 'bin', 'taskmaster.js'), 'db'], {
      cwd,
      env: { TASKMASTER_DATA: '' },
    });
    try {
      await db.waitFor(/MONGO_URL=\S+/);
      const where = path.join(fs.realpathSync(cwd), '.taskmaster', 'db');
      await db.waitFor(new RegExp(`data in ${where.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}, `));
      expect(fs.existsSync(path.join(where, LOCK_FILE))).toBe(true);
    } finally {
      await db.kill('SIGTERM');
      fs.rmSync(cwd, { recursive: true, force: true });
    }
  }, 60_000);
});

describe('one server per data directory', () => {
  let dir: string;
  beforeEach(() => {
    dir = tempDir('db-lock');
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('a second `taskmaster db` and an embedded database on files in use are refused, naming the running one; after SIGKILL the lock is taken over', async () => {
    const first = spawnCli(['db', '--data', dir]);
    try {
      const url = (await first.waitFor(/MONGO_URL=\S+/)).slice('MONGO_URL='.length);
      const holder = readHolder(path.join(dir, LOCK_FILE));
      expect(holder).toMatchObject({ pid: first.child.pid, url, serverPid: expect.any(Number) });

      const second = spawnSync(process.execPath, ['bin/taskmaster.js', 'db', '--data', dir], {
        encoding: 'utf8',
        timeout: 60_000,
      });
      expect(second.status).toBe(1);
      expect(second.stdout).toBe('');
      expect(second.stderr).toContain(`is in use by a running ferretdb (pid ${holder?.serverPid} at ${url}`);
      expect(second.stderr).toContain(`MONGO_URL=${url}`);

      // A master without MONGO_URL starts its embedded database this way.
      await expect(startEmbeddedDatabase({ dataDir: dir, log: () => {} })).rejects.toThrow(DataDirInUseError);

      await first.kill('SIGKILL');
      // The watchdog stops FerretDB once its parent is gone; the lock then names only dead processes.
      await eventually(async () => !isAlive(holder!.serverPid!), 15_000);
      const db = await startEmbeddedDatabase({ dataDir: dir, log: () => {} });
      try {
        expect(readHolder(path.join(dir, LOCK_FILE))).toMatchObject({ pid: process.pid, url: db.url });
      } finally {
        await db.stop();
      }
      expect(fs.existsSync(path.join(dir, LOCK_FILE))).toBe(false);
    } finally {
      await first.kill('SIGKILL');
    }
  }, 120_000);

  test('taskmaster db --synchronous normal runs FerretDB with that setting; an unknown mode is refused naming the flag', async () => {
    const db = spawnCli(['db', '--data', dir, '--synchronous', 'normal']);
    try {
      await db.waitFor(/MONGO_URL=\S+/);
      const holder = readHolder(path.join(dir, LOCK_FILE));
      const args = fs.readFileSync(`/proc/${holder?.serverPid}/cmdline`, 'utf8').split('\0').join(' ');
      expect(args).toContain('synchronous(normal)');
    } finally {
      await db.kill('SIGTERM');
    }
    const bad = spawnSync(
      process.execPath,
      ['bin/taskmaster.js', 'db', '--data', dir, '--synchronous', 'sometimes'],
      {
        encoding: 'utf8',
        timeout: 60_000,
      },
    );
    expect(bad.status).not.toBe(0);
    expect(bad.stderr).toContain('--synchronous');
  }, 120_000);

  test('a lock left by a process that is gone is taken over', async () => {
    const gone = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], {
      encoding: 'utf8',
    });
    const deadPid = Number(gone.stdout);
    const lock = path.join(dir, LOCK_FILE);
    const stale = {
      pid: deadPid,
      serverPid: deadPid,
      url: 'mongodb://127.0.0.1:1/',
      since: '2020-01-01T00:00:00Z',
    };
    fs.writeFileSync(lock, JSON.stringify(stale));
    const db = await startEmbeddedDatabase({ dataDir: dir, log: () => {} });
    try {
      expect(readHolder(lock)).toMatchObject({ pid: process.pid, url: db.url, serverPid: db.pid });
    } finally {
      await db.stop();
    }
  }, 60_000);
});

/**
 * The embedded database as a user meets it first: building FerretDB says what it does and how long it
 * takes, and one data directory serves one server at a time (db/data-dir-lock.ts).
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { DataDirInUseError, LOCK_FILE, readHolder } from '../../db/data-dir-lock';
import { startEmbeddedDatabase } from '../../db/server';
import { USUAL_BUILD_TIME, buildFerretDB, findOnPath, startProgress } from '../../db/ferretdb-build';
import { spawnCli, tempDir } from '../helpers/cluster';
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
        `building FerretDB 1.24.2 (stock) into .cache/bin/ferretdb-1.24.2-stock: 0 s (${USUAL_BUILD_TIME})\n`,
      );
      expect(lines).toEqual([expect.stringMatching(/^built FerretDB in \d+ s: .*ferretdb-1\.24\.2-stock$/)]);
    },
    180_000,
  );
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

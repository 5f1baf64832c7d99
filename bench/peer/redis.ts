/**
 * A private Redis for the BullMQ side: the machine's `redis-server` on a free 127.0.0.1 port with its
 * own temporary directory, no RDB snapshots, and AOF either off or fsync'd on every write. The
 * machine's shared Redis (6379) is never used.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort } from '../../db/server';
import { spawnTethered } from './processes';

export const REDIS_SERVER = process.env.REDIS_SERVER ?? '/usr/bin/redis-server';

/** `none`: `--appendonly no`; `always`: `--appendonly yes --appendfsync always`. */
export type RedisPersistence = 'none' | 'always';

export interface PrivateRedis {
  port: number;
  pid: number;
  version: string;
  stop(): Promise<void>;
}

const dirs = new Set<string>();
process.on('exit', () => {
  for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true });
});

export async function startRedis(persistence: RedisPersistence): Promise<PrivateRedis> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'taskmaster-peer-redis-'));
  dirs.add(dir);
  // Another process can take the free port before Redis binds it: try a few.
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    if (port === 6379) continue;
    const args = [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--dir',
      dir,
      '--save',
      '',
      '--daemonize',
      'no',
      '--loglevel',
      'notice',
      '--maxmemory-policy',
      'noeviction',
      ...(persistence === 'always'
        ? ['--appendonly', 'yes', '--appendfsync', 'always']
        : ['--appendonly', 'no']),
    ];
    const server = await spawnTethered(REDIS_SERVER, args);
    try {
      await server.waitFor(/Ready to accept connections/, `redis-server on ${port}`, 15_000);
    } catch (err) {
      await server.stop(1_000);
      if (attempt < 3 && /Address already in use/i.test(server.output())) continue;
      fs.rmSync(dir, { recursive: true, force: true });
      dirs.delete(dir);
      throw err;
    }
    const version = /Redis version=([\d.]+)/.exec(server.output())?.[1] ?? '?';
    return {
      port,
      pid: server.pid,
      version,
      stop: async () => {
        await server.stop(5_000);
        fs.rmSync(dir, { recursive: true, force: true });
        dirs.delete(dir);
      },
    };
  }
}

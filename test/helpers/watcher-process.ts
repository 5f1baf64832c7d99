/**
 * Feeder connections in a process of their own that watch task ids and tally what they get: a test
 * measuring the master's event loop in its own process then measures the master alone, not the
 * parsing of hundreds of thousands of outcomes by its clients.
 *
 * `startWatchers(url, sockets, ids)` forks this file (through bin/run-ts.js); it resolves once every
 * connection watches every id (`tasks:watch`, 4,000 ids a message). `tally()` resolves when every
 * connection has every id's outcome at least once, with, per connection, the ids it got and how
 * many times at most, and the largest message; or rejects when a connection closed first.
 */
import { fork } from 'node:child_process';
import path from 'node:path';
import { io } from 'socket.io-client';

export interface WatchTally {
  /** Per connection: distinct ids received, and the most times one id came. */
  connections: { ids: number; mostTimes: number }[];
  /** The most outcomes one `task:outcomes` message carried. */
  largestMessage: number;
}

type FromChild = { ready: true } | { tally: WatchTally } | { lost: string };

export async function startWatchers(
  url: string,
  sockets: number,
  ids: string[],
): Promise<{ tally: () => Promise<WatchTally>; close: () => void }> {
  const child = fork(
    path.join(__dirname, '..', '..', 'bin', 'run-ts.js'),
    [__filename, '--watchers', url, String(sockets)],
    { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] },
  );
  const next = (): Promise<FromChild> =>
    new Promise((resolve, reject) => {
      child.once('message', (m: FromChild) => resolve(m));
      child.once('exit', (code) => reject(new Error(`the watchers' process exited (${code})`)));
    });
  const ready = next();
  child.send(ids);
  const first = await ready;
  if (!('ready' in first)) throw new Error(`watchers not ready: ${JSON.stringify(first)}`);
  const result = next();
  result.catch(() => {}); // awaited through tally()
  return {
    tally: async () => {
      const m = await result;
      if ('lost' in m) throw new Error(m.lost);
      if (!('tally' in m)) throw new Error(`unexpected ${JSON.stringify(m)}`);
      return m.tally;
    },
    close: () => void (child.exitCode === null && child.kill()),
  };
}

async function watchersMain(url: string, count: number, ids: string[]): Promise<void> {
  const seen: Map<string, number>[] = [];
  let largestMessage = 0;
  let finished = false;
  const finish = (m: FromChild) => {
    if (finished) return;
    finished = true;
    process.send?.(m, () => process.exit(0));
  };
  const complete = () => seen.length === count && seen.every((m) => m.size === ids.length);
  for (let k = 0; k < count; k++) {
    const s = io(new URL('/feeder', url).href, {
      transports: ['websocket'],
      reconnection: false,
      forceNew: true,
    });
    await new Promise<void>((resolve) => s.once('connect', () => resolve()));
    for (let i = 0; i < ids.length; i += 4000) {
      const reply = (await s.emitWithAck('tasks:watch', { ids: ids.slice(i, i + 4000) })) as { ok: boolean };
      if (!reply.ok) throw new Error(`tasks:watch refused: ${JSON.stringify(reply)}`);
    }
    const counts = new Map<string, number>();
    seen.push(counts);
    s.on('task:outcomes', (m: { outcomes: { id: string }[] }) => {
      largestMessage = Math.max(largestMessage, m.outcomes.length);
      for (const o of m.outcomes) counts.set(o.id, (counts.get(o.id) ?? 0) + 1);
      if (!complete()) return;
      // Later duplicates would come right behind: a turn of the loop lets them in first.
      setImmediate(() =>
        finish({
          tally: {
            connections: seen.map((c) => ({ ids: c.size, mostTimes: Math.max(...c.values()) })),
            largestMessage,
          },
        }),
      );
    });
    s.on('disconnect', (reason) => finish({ lost: `a watcher's connection closed (${reason})` }));
  }
  process.send?.({ ready: true });
}

const at = process.argv.indexOf('--watchers');
if (at >= 0) {
  process.once('message', (ids: string[]) => {
    watchersMain(process.argv[at + 1], Number(process.argv[at + 2]), ids).catch((err: unknown) => {
      process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
      process.exit(1);
    });
  });
}

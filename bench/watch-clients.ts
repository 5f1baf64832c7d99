/**
 * Feeder connections that watch task ids and count the outcomes they get, in a process of their own
 * (bench/big.ts starts several): their parsing of millions of outcomes then weighs neither on the
 * master's event loop nor on the bench's, and spread over processes no one of them falls so far
 * behind that its connection times out.
 *
 * Forked through bin/run-ts.js with `--watch-clients URL SOCKETS IDS` (ids `w-0` … `w-(IDS-1)`);
 * over IPC it says `{ ready: true }` once every connection watches every id, then
 * `{ done: true }` once each has every outcome, or `{ lost }` when a connection closed first.
 */
import { fork } from 'node:child_process';
import path from 'node:path';
import { io } from 'socket.io-client';

type FromClients = { ready: true } | { done: true } | { lost: string };

export interface WatchClients {
  /** Resolves once every connection has every outcome; rejects when one closed first. */
  done: Promise<void>;
  close(): void;
}

/** Starts a process of `sockets` connections watching `ids` ids; resolves once they all watch. */
export async function startWatchClients(url: string, sockets: number, ids: number): Promise<WatchClients> {
  const child = fork(
    path.join(__dirname, '..', 'bin', 'run-ts.js'),
    [__filename, '--watch-clients', url, String(sockets), String(ids)],
    { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] },
  );
  const next = (): Promise<FromClients> =>
    new Promise((resolve, reject) => {
      child.once('message', (m: FromClients) => resolve(m));
      child.once('exit', (code) => reject(new Error(`a watchers' process exited (${code})`)));
    });
  const first = await next();
  if (!('ready' in first)) throw new Error(`watchers not ready: ${JSON.stringify(first)}`);
  const done = next().then((m) => {
    if ('lost' in m) throw new Error(m.lost);
  });
  done.catch(() => {}); // handled by whoever awaits it
  return { done, close: () => void (child.exitCode === null && child.kill()) };
}

async function clientsMain(url: string, count: number, n: number): Promise<void> {
  const ids = Array.from({ length: n }, (_, i) => `w-${i}`);
  const sockets: ReturnType<typeof io>[] = [];
  let received = 0;
  let finished = false;
  const finish = (m: FromClients) => {
    if (finished) return;
    finished = true;
    process.send?.(m, () => process.exit(0));
  };
  for (let k = 0; k < count; k++) {
    const s = io(new URL('/feeder', url).href, { transports: ['websocket'], forceNew: true });
    sockets.push(s);
    await new Promise<void>((resolve) => s.once('connect', () => resolve()));
    for (let i = 0; i < n; i += 4000) await s.emitWithAck('tasks:watch', { ids: ids.slice(i, i + 4000) });
    s.on('task:outcomes', (m: { outcomes: unknown[] }) => {
      received += m.outcomes.length;
      if (received === count * n) finish({ done: true });
    });
    s.on('disconnect', (reason) =>
      finish({ lost: `a watcher's connection closed (${reason}) after ${received} outcomes` }),
    );
  }
  process.send?.({ ready: true });
}

const at = process.argv.indexOf('--watch-clients');
if (at >= 0) {
  const [url, count, n] = process.argv.slice(at + 1, at + 4);
  clientsMain(url, Number(count), Number(n)).catch((err: unknown) => {
    process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  });
}

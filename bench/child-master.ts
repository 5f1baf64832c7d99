/**
 * A master in a process of its own, for benchmarks that measure the master's event loop apart from
 * their clients': a client in the same process (sockets parsing thousands of outcomes) would add its
 * own work to the delay measured, and the figure would not say whose it is.
 *
 * The parent forks this file (through bin/run-ts.js) and talks over IPC: the child answers
 * `{ url }` once listening; `loop:start` starts perf_hooks' monitorEventLoopDelay, `loop:stop` answers
 * `{ loopMaxMs }`; `close` closes the master and exits. `startChildMaster` is the parent's side.
 * With `cpuProfDir`, the child writes a V8 CPU profile there (`node --cpu-prof`) as it exits.
 */
import { fork, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { createLogger } from '../common/logger';
import { Master } from '../master/master';

type FromChild = { url: string } | { loopMaxMs: number } | { closed: true };

export interface ChildMaster {
  url: string;
  /** Starts measuring the child's event loop delay. */
  loopStart(): Promise<void>;
  /** The longest delay since `loopStart`, in ms. */
  loopStop(): Promise<number>;
  close(): Promise<void>;
}

export async function startChildMaster(
  mongoUrl: string,
  dbName: string,
  opts: { cpuProfDir?: string } = {},
): Promise<ChildMaster> {
  const child: ChildProcess = fork(
    path.join(__dirname, '..', 'bin', 'run-ts.js'),
    [__filename, '--child-master', mongoUrl, dbName],
    {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      execArgv: opts.cpuProfDir ? ['--cpu-prof', '--cpu-prof-dir', opts.cpuProfDir] : [],
    },
  );
  const next = <K extends string>(key: K): Promise<Extract<FromChild, Record<K, unknown>>> =>
    new Promise((resolve, reject) => {
      const onExit = (code: number | null) => reject(new Error(`the master's process exited (${code})`));
      const onMessage = (m: FromChild) => {
        if (!(key in m)) return;
        child.off('message', onMessage);
        child.off('exit', onExit);
        resolve(m as Extract<FromChild, Record<K, unknown>>);
      };
      child.on('message', onMessage);
      child.once('exit', onExit);
    });
  const { url } = await next('url');
  return {
    url,
    loopStart: async () => void child.send('loop:start'),
    loopStop: async () => {
      const reply = next('loopMaxMs');
      child.send('loop:stop');
      return (await reply).loopMaxMs;
    },
    close: async () => {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.send('close');
      await exited;
    },
  };
}

async function childMain(mongoUrl: string, dbName: string): Promise<void> {
  const master = new Master({
    mongoUrl,
    dbName,
    port: 0,
    logger: createLogger({ level: 'warn', format: 'json', stderr: true }),
  });
  await master.start();
  let loop = monitorEventLoopDelay({ resolution: 10 });
  process.on('message', (m: string) => {
    if (m === 'loop:start') {
      loop = monitorEventLoopDelay({ resolution: 10 });
      loop.enable();
    } else if (m === 'loop:stop') {
      loop.disable();
      process.send?.({ loopMaxMs: loop.max / 1e6 });
    } else if (m === 'close')
      // --cpu-prof writes its profile on process.exit too.
      void master.close().then(() => process.exit(0));
  });
  process.send?.({ url: master.url });
}

const at = process.argv.indexOf('--child-master');
if (at >= 0) {
  childMain(process.argv[at + 1], process.argv[at + 2]).catch((err: unknown) => {
    process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  });
}

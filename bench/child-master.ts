/**
 * A master in a process of its own, for benchmarks that measure the master's event loop apart from
 * their clients': a client in the same process (sockets parsing thousands of outcomes) would add its
 * own work to the delay measured, and the figure would not say whose it is.
 *
 * The parent forks this file (through bin/run-ts.js) and talks over IPC: the child answers
 * `{ url }` once listening; `loop:start` starts perf_hooks' monitorEventLoopDelay and a `/health`
 * sampler, `loop:stop` answers with their figures; `close` closes the master and exits. `startChildMaster` is the parent's side.
 * With `cpuProfDir`, the child writes a V8 CPU profile there (`node --cpu-prof`) as it exits.
 */
import { fork, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Worker } from 'node:worker_threads';
import { createLogger } from '../common/logger';
import { Master } from '../master/master';

interface LoopFigures {
  /** The master's longest event loop delay (ms). */
  loopMaxMs: number;
  /** The slowest `/health` answer (ms), and how many failed. */
  healthMaxMs: number;
  healthFailed: number;
}

type FromChild = { url: string } | LoopFigures;

export interface ChildMaster {
  url: string;
  /** Starts measuring the child's event loop delay and sampling its `/health`. */
  loopStart(): Promise<void>;
  /** The figures since `loopStart`. */
  loopStop(): Promise<LoopFigures>;
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
      return reply;
    },
    close: async () => {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.send('close');
      await exited;
    },
  };
}

/**
 * Asks `/health` every 20 ms and keeps the slowest answer, from a thread of the master's process with
 * an event loop of its own: neither the master's loop nor the clients' (in the parent) delays the
 * asking, so the figure is the master's answer time.
 */
const HEALTH_SAMPLER = `
const http = require('node:http');
const { parentPort, workerData } = require('node:worker_threads');
let slowest = 0, failed = 0, stop = false;
parentPort.on('message', () => (stop = true));
const ask = () => new Promise((resolve) => {
  const t = performance.now();
  const done = (ok) => { if (!ok) failed++; slowest = Math.max(slowest, performance.now() - t); resolve(); };
  const req = http.get(new URL('/health', workerData.url), { agent: false }, (res) => { res.resume(); res.on('end', () => done(true)); });
  req.on('error', () => done(false));
});
(async () => {
  while (!stop) { await ask(); await new Promise((r) => setTimeout(r, 20)); }
  parentPort.postMessage({ healthMaxMs: slowest, healthFailed: failed });
})();
`;

async function childMain(mongoUrl: string, dbName: string): Promise<void> {
  const master = new Master({
    mongoUrl,
    dbName,
    port: 0,
    logger: createLogger({ level: 'warn', format: 'json', stderr: true }),
  });
  await master.start();
  let loop = monitorEventLoopDelay({ resolution: 10 });
  let sampler: Worker | undefined;
  process.on('message', (m: string) => {
    if (m === 'loop:start') {
      loop = monitorEventLoopDelay({ resolution: 10 });
      loop.enable();
      sampler = new Worker(HEALTH_SAMPLER, { eval: true, workerData: { url: master.url } });
    } else if (m === 'loop:stop') {
      loop.disable();
      const w = sampler;
      sampler = undefined;
      if (!w) return void process.send?.({ loopMaxMs: loop.max / 1e6, healthMaxMs: 0, healthFailed: 0 });
      w.once('message', (h: { healthMaxMs: number; healthFailed: number }) => {
        process.send?.({ loopMaxMs: loop.max / 1e6, ...h });
        void w.terminate();
      });
      w.postMessage('stop');
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

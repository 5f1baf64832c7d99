/**
 * Rate limits: the start rate achieved under `--limit module:stamp=N/s`, as the children see it
 * (each task returns when it began). For each limit: enough tasks wait all along (N × seconds plus
 * N more), runner processes take them, and it prints the rate (starts per second over the whole
 * seconds from the first start), the busiest 1-second window (never above N) and the time the
 * batch took.
 *
 *   npm run bench:limits -- [--rates 100,1000] [--seconds 5] [--runners 2] [--workers 1] [--slots 64]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import os from 'node:os';
import { parseArgs } from 'node:util';
import { Feeder } from '../feeder/feeder';
import { freePort } from '../db/server';
import type { TaskOutcome } from '../protocol/schemas';
import { benchDatabase, masterArgs, runBench, runnerArgs } from './run';

const { values: args } = parseArgs({
  options: {
    rates: { type: 'string', default: '100,1000' },
    seconds: { type: 'string', default: '5' },
    runners: { type: 'string', default: '2' },
    workers: { type: 'string', default: '1' },
    slots: { type: 'string', default: '64' },
  },
});

function waitForLine(child: ChildProcess, pattern: RegExp, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => reject(new Error(`${what} did not start within 60 s:\n${buf}`)), 60_000);
    const onData = (d: Buffer) => {
      buf += d.toString();
      if (!pattern.test(buf)) return;
      clearTimeout(timer);
      child.stdout?.off('data', onData);
      child.stderr?.off('data', onData);
      resolve();
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('exit', (code) => reject(new Error(`${what} exited with ${code}:\n${buf}`)));
  });
}

/** The most starts in any window `[t, t + ms)`. */
function busiest(sorted: number[], ms: number): number {
  let most = 0;
  for (let i = 0, j = 0; i < sorted.length; i++) {
    while (sorted[i] - sorted[j] >= ms) j++;
    most = Math.max(most, i - j + 1);
  }
  return most;
}

async function measure(
  rate: number,
  mongoUrl: string,
  children: ChildProcess[],
): Promise<Record<string, unknown>> {
  const env = { ...process.env, TASKMASTER_LOG_FORMAT: 'json', TASKMASTER_LOG_LEVEL: 'warn' };
  const port = await freePort();
  const master = spawn(process.execPath, masterArgs(port, mongoUrl, ['--limit', `module:stamp=${rate}/s`]), {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(master);
  await waitForLine(master, /master listening/, 'master');
  const url = `http://127.0.0.1:${port}`;
  const runners: ChildProcess[] = [];
  for (let i = 0; i < Number(args.runners); i++) {
    const r = spawn(process.execPath, runnerArgs(url, Number(args.workers), Number(args.slots)), {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.push(r);
    runners.push(r);
    await waitForLine(r, /runner (ready|registered|connected)/i, `runner ${i}`);
  }
  const feeder = new Feeder({ master: url });
  await feeder.ready();
  const n = rate * Number(args.seconds) + rate;
  const starts: number[] = [];
  let failed = 0;
  const all = new Promise<void>((resolve) =>
    feeder.on('result', (o: TaskOutcome) => {
      if (o.state === 'done') starts.push(o.result as number);
      else failed++;
      if (starts.length + failed === n) resolve();
    }),
  );
  const began = Date.now();
  for (let i = 0; i < n; i += 1000)
    await feeder.add(Array.from({ length: Math.min(1000, n - i) }, () => ({ module: 'stamp' })));
  await all;
  const seconds = (Date.now() - began) / 1000;
  starts.sort((a, b) => a - b);
  // Over whole seconds from the first start: a window may start its N at once, so a partial last
  // second would count a burst against a fraction of its time.
  const whole = Math.max(1, Math.floor((starts[starts.length - 1] - starts[0]) / 1000));
  const inWhole = starts.filter((s) => s < starts[0] + whole * 1000).length;
  await feeder.close();
  for (const c of [...runners, master]) c.kill('SIGTERM');
  return {
    limit: `${rate}/s`,
    tasks: n,
    startsPerSecond: Math.round((inWhole / whole) * 10) / 10,
    ofLimit: Number((inWhole / whole / rate).toFixed(3)),
    busiestSecond: busiest(starts, 1000),
    seconds: Number(seconds.toFixed(2)),
    failed,
  };
}

async function main(): Promise<void> {
  const db = await benchDatabase();
  const children: ChildProcess[] = [];
  const stop = () => children.forEach((c) => c.exitCode === null && c.kill('SIGKILL'));
  process.on('exit', stop);
  try {
    for (const rate of String(args.rates).split(',').map(Number)) {
      const url = new URL(db.url);
      url.pathname = `/bench_limits_${rate}_${Date.now()}`;
      const line = await measure(rate, url.toString(), children);
      stop();
      const info = {
        runners: Number(args.runners),
        slotsPerRunner: Number(args.slots),
        cpus: os.cpus().length,
      };
      process.stdout.write(`${JSON.stringify({ ...line, ...info, database: db.kind })}\n`);
    }
  } finally {
    stop();
    await db.stop();
  }
}

runBench(main);

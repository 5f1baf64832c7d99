/**
 * The runner's share of a drain: `--tasks` no-op tasks queued on a master, then one runner process
 * (`--workers`, `--slots`, `--isolation`) drains them. Prints tasks/s and the CPU time the runner and
 * its workers spent per task (from /proc, from its registration to the last result). With
 * `--strace FILE` the runner runs under `strace -c -f -o FILE` (its children and threads followed) and
 * the system calls per task are printed from that summary: what the runner ↔ worker hop costs.
 *
 *   npm run bench:runner -- [--tasks 5000] [--workers 1] [--slots 32] [--isolation process|thread]
 *                           [--strace FILE]
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { Feeder } from '../feeder/feeder';
import { freePort } from '../db/server';
import { spawnTethered, treeCpuMs, type Tethered } from './peer/processes';
import { benchDatabase, masterArgs, runBench, runnerArgs } from './run';

const { values: args } = parseArgs({
  options: {
    tasks: { type: 'string', default: '5000' },
    workers: { type: 'string', default: '1' },
    slots: { type: 'string', default: '32' },
    isolation: { type: 'string', default: 'process' },
    strace: { type: 'string' },
    timeout: { type: 'string', default: '600' },
  },
});

const ENV = { ...process.env, TASKMASTER_LOG_FORMAT: 'json', TASKMASTER_LOG_LEVEL: 'warn' };

async function main(): Promise<void> {
  const n = Number(args.tasks);
  const db = await benchDatabase();
  const started: Tethered[] = [];
  try {
    const url = new URL(db.url);
    url.pathname = `/runner_hop_${process.pid}`;
    const port = await freePort();
    const master = await spawnTethered(process.execPath, masterArgs(port, url.toString()), ENV);
    started.push(master);
    await master.waitFor(/master listening/, 'master');
    const masterUrl = `http://127.0.0.1:${port}`;
    const feeder = new Feeder({ master: masterUrl });
    await feeder.ready();
    for (let i = 0; i < n; i += 1000)
      await feeder.add(Array.from({ length: Math.min(1000, n - i) }, () => ({ module: 'noop', params: [] })));
    let seen = 0;
    let first = 0;
    let last = 0;
    const all = new Promise<void>((resolve) =>
      feeder.on('result', () => {
        last = performance.now();
        first ||= last;
        if (++seen === n) resolve();
      }),
    );
    const cli = [
      process.execPath,
      ...runnerArgs(masterUrl, Number(args.workers), Number(args.slots), [
        '--isolation',
        String(args.isolation),
      ]),
    ];
    const [bin, ...rest] = args.strace ? ['strace', '-c', '-f', '-o', args.strace, ...cli] : cli;
    const runner = await spawnTethered(bin, rest, ENV);
    started.push(runner);
    await runner.waitFor(/runner (ready|registered|connected)/i, 'runner');
    // Under strace, the runner is strace's child: its CPU is not what is measured then.
    const cpu0 = treeCpuMs(runner.pid);
    const timer = setTimeout(
      () => {
        process.stderr.write('drain timed out\n');
        process.exit(1);
      },
      Number(args.timeout) * 1000,
    );
    await all;
    clearTimeout(timer);
    const cpuUs = ((treeCpuMs(runner.pid) - cpu0) * 1000) / n;
    await feeder.close();
    // SIGTERM to the runner itself (under strace: strace's child), so strace writes its summary.
    const pid = args.strace ? Number(spawnSync('pgrep', ['-P', String(runner.pid)]).stdout.toString()) : 0;
    if (pid) process.kill(pid, 'SIGTERM');
    await runner.stop(10_000);
    const line: Record<string, unknown> = {
      tasks: n,
      isolation: args.isolation,
      workers: Number(args.workers),
      slots: Number(args.slots),
      tasksPerSecond: Math.round((n - 1) / ((last - first) / 1000)),
      ...(args.strace ? {} : { runnerCpuUsPerTask: Math.round(cpuUs) }),
    };
    if (args.strace) line.syscallsPerTask = syscallsPerTask(fs.readFileSync(args.strace, 'utf8'), n);
    process.stdout.write(`${JSON.stringify(line)}\n`);
  } finally {
    for (const p of started.reverse()) await p.stop(10_000);
    await db.stop();
  }
}

/** From `strace -c`'s table: calls per task of the calls the hop makes, and of all of them. */
function syscallsPerTask(summary: string, n: number): Record<string, number> {
  const out: Record<string, number> = {};
  for (const row of summary.split('\n')) {
    const cols = row.trim().split(/\s+/);
    const name = cols[cols.length - 1];
    if (!['read', 'write', 'writev', 'epoll_pwait', 'epoll_wait', 'futex', 'total'].includes(name)) continue;
    // `% time seconds usecs/call calls [errors] syscall`: calls is the fourth column.
    out[name] = Math.round((Number(cols[3]) / n) * 100) / 100;
  }
  return out;
}

runBench(main);

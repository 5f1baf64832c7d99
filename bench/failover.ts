/**
 * Takeovers under load: two masters on one database (the active one and a standby), two runners and
 * a feeder given both URLs, and a batch running when the active master is taken away:
 *
 *   kill   SIGKILL: on the same machine the standby sees the holder's process is gone at once.
 *   stop   SIGSTOP, as a machine that vanished from the network (or died on another host) looks: the
 *          standby waits until the lease stood still for `--lease-ms`; the stopped one is then killed.
 *
 * Each round: a batch of `--tasks` tasks (bench/tasks/logged.js: each execution appends its id and
 * start time to a file), the active master taken away once a third of them started, a new standby
 * started on its port; the batch must complete. Reported per lease and mode: the time from the
 * signal to the first task started after the new master said it is active (p50 and max over
 * `--rounds`), tasks lost (not done) and tasks executed more than once.
 *
 *   npm run bench:failover -- [--rounds 10] [--lease-ms 10000,3000] [--mode kill,stop] [--tasks 200]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Feeder } from '../feeder/feeder';
import { benchDatabase, masterArgs, runBench, runnerArgs } from './run';

const { values: args } = parseArgs({
  options: {
    rounds: { type: 'string', default: '10' },
    'lease-ms': { type: 'string', default: '10000,3000' },
    mode: { type: 'string', default: 'kill,stop' },
    tasks: { type: 'string', default: '200' },
  },
});

interface Proc {
  child: ChildProcess;
  /** What it printed so far (the last 500 KB at least). */
  output(): string;
  /** Resolves when a line matching `pattern` appears (from now on, or already seen with `seen`). */
  waitFor(pattern: RegExp, timeoutMs: number, seen?: boolean): Promise<void>;
}

/** Every process started, killed when the bench exits. */
const children = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of children) c.kill('SIGKILL');
});

function start(argv: string[], env: Record<string, string> = {}): Proc {
  const child = spawn(process.execPath, argv, {
    env: { ...process.env, TASKMASTER_LOG_FORMAT: 'json', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const listeners = new Set<() => void>();
  const onData = (d: Buffer) => {
    out += d.toString();
    if (out.length > 1_000_000) out = out.slice(-500_000);
    for (const l of [...listeners]) l();
  };
  child.stdout?.on('data', onData);
  child.stderr?.on('data', onData);
  children.add(child);
  return {
    child,
    output: () => out,
    waitFor(pattern, timeoutMs, seen = true) {
      const from = seen ? 0 : out.length;
      return new Promise((resolve, reject) => {
        const check = () => {
          if (!pattern.test(out.slice(from))) return;
          listeners.delete(check);
          clearTimeout(timer);
          resolve();
        };
        const timer = setTimeout(() => {
          listeners.delete(check);
          reject(new Error(`timed out waiting for ${pattern}:\n${out.slice(-2000)}`));
        }, timeoutMs);
        listeners.add(check);
        check();
      });
    },
  };
}

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

/** Executions so far: task id → start times. */
function executions(file: string): Map<string, number[]> {
  const runs = new Map<string, number[]>();
  if (!fs.existsSync(file)) return runs;
  for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
    const [id, at] = line.split(' ');
    if (!id) continue;
    const list = runs.get(id) ?? [];
    list.push(Number(at));
    runs.set(id, list);
  }
  return runs;
}

async function until(what: string, timeoutMs: number, check: () => boolean): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** When the new master took each step of its takeover, from its JSON log, in ms after `t0`. */
function steps(out: string, t0: number): string {
  const marks: [string, RegExp][] = [
    ['elected', /^(elected the active master|took over from a master that is gone)/],
    ['recovered', /^recovery finished/],
    ['listening', /^master listening/],
  ];
  const seen: string[] = [];
  for (const line of out.split('\n')) {
    if (!line.startsWith('{')) continue;
    let entry: { message?: string; timestamp?: string; ms?: number };
    try {
      entry = JSON.parse(line) as typeof entry;
    } catch {
      continue;
    }
    const at = Date.parse(entry.timestamp ?? '');
    if (!(at >= t0)) continue;
    for (const [name, re] of marks)
      if (re.test(entry.message ?? ''))
        seen.push(`${name} +${at - t0} ms${entry.ms !== undefined ? ` (took ${entry.ms} ms)` : ''}`);
  }
  return seen.join(', ');
}

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};

async function scenario(mongoUrl: string, leaseMs: number, mode: 'kill' | 'stop'): Promise<void> {
  const rounds = Number(args.rounds);
  const perRound = Number(args.tasks);
  const db = `failover_${mode}_${leaseMs}_${process.pid}`;
  const url = new URL(mongoUrl);
  url.pathname = `/${db}`;
  const log = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'taskmaster-failover-')), 'runs.log');
  const ports = [await freePort(), await freePort()];
  const urls = ports.map((p) => `http://127.0.0.1:${p}`);
  const master = (i: number) => start(masterArgs(ports[i], url.href, ['--lease-ms', String(leaseMs)]));
  const masters = [master(0), null as Proc | null];
  await masters[0]?.waitFor(/master listening/, 60_000);
  masters[1] = master(1);
  await masters[1].waitFor(/standing by/, 60_000);
  const runners = [0, 1].map(() => start(runnerArgs(urls.join(','), 2, 8), { FAILOVER_LOG: log }));
  for (const r of runners) await r.waitFor(/connected to the master/, 60_000);
  const feeder = new Feeder({ master: urls, connectTimeoutMs: 60_000 });
  await feeder.ready();
  let active = 0;
  const latencies: number[] = [];
  const ids: string[] = [];
  let notDone = 0;
  for (let round = 0; round < rounds; round++) {
    const batch = Array.from({ length: perRound }, (_, i) => ({
      id: `${mode}-${leaseMs}-r${round}-${i}`,
      module: 'logged',
      params: [50],
    }));
    ids.push(...batch.map((t) => t.id));
    const work = feeder.work(batch);
    const prefix = `${mode}-${leaseMs}-r${round}-`;
    const started = () => [...executions(log).keys()].filter((id) => id.startsWith(prefix)).length;
    await until('a third of the batch started', 120_000, () => started() >= perRound / 3);
    process.stderr.write(
      `round ${round + 1}: ${started()} started; taking the active master away (${mode})\n`,
    );
    const gone = masters[active] as Proc;
    const standby = masters[1 - active] as Proc;
    const t0 = Date.now();
    gone.child.kill(mode === 'kill' ? 'SIGKILL' : 'SIGSTOP');
    await standby.waitFor(/master listening/, 10 * leaseMs + 60_000);
    // Starts after this moment were assigned by the new master (an assignment the old one sent just
    // before the signal can start just after it).
    const activeAt = Date.now();
    process.stderr.write(
      `round ${round + 1}: the standby is active after ${Date.now() - t0} ms (${steps(standby.output(), t0)})\n`,
    );
    // The first execution that began after the signal was assigned by the new master.
    await until('a task started by the new master', 120_000, () =>
      [...executions(log).values()].some((starts) => starts.some((at) => at > activeAt)),
    );
    const first = Math.min(...[...executions(log).values()].flat().filter((at) => at > activeAt));
    latencies.push(first - t0);
    if (mode === 'stop') gone.child.kill('SIGKILL');
    await new Promise<void>((resolve) =>
      gone.child.exitCode !== null || gone.child.signalCode !== null
        ? resolve()
        : gone.child.once('exit', () => resolve()),
    );
    // A new standby where the old one was: the clients' list of URLs stays right.
    const replacement = master(active);
    await replacement.waitFor(/standing by/, 60_000);
    process.stderr.write(`round ${round + 1}: a new standby on the old port\n`);
    masters[active] = replacement;
    active = 1 - active;
    const outcomes = await work;
    const failed = outcomes.filter((o) => o.state !== 'done');
    notDone += failed.length;
    if (failed.length > 0)
      process.stderr.write(
        `round ${round + 1}: ${failed.length} not done, e.g. ${JSON.stringify(failed[0])}\n`,
      );
    process.stderr.write(
      `${mode} lease ${leaseMs} ms round ${round + 1}/${rounds}: first start ${first - t0} ms after the signal\n`,
    );
  }
  const runs = executions(log);
  // Lost: acknowledged and never done (failed, or never run).
  const lost = notDone + ids.filter((id) => !runs.has(id)).length;
  const twice = ids.filter((id) => (runs.get(id)?.length ?? 0) > 1).length;
  await feeder.close();
  for (const p of [...masters, ...runners]) p?.child.kill('SIGKILL');
  console.log(
    `${mode.padEnd(4)} --lease-ms ${String(leaseMs).padStart(5)}: signal → first task started by the new master ` +
      `p50 ${pct(latencies, 50)} ms, max ${Math.max(...latencies)} ms over ${rounds} takeovers; ` +
      `${ids.length} tasks, lost ${lost}, executed twice ${twice}`,
  );
}

runBench(async () => {
  const db = await benchDatabase();
  for (const leaseMs of (args['lease-ms'] ?? '').split(',').map(Number))
    for (const mode of (args.mode ?? '').split(',') as ('kill' | 'stop')[])
      await scenario(db.url, leaseMs, mode);
  await db.stop();
});

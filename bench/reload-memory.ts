/**
 * Hot-loading memory: edits one task module N times (default 1000) while a runner process runs it
 * after every edit, and prints the runner's and its child's resident memory after a warm-up and at
 * the end. Each version carries ~20 kB of code, so keeping old versions would show.
 *
 *   npm run bench:reload -- [--edits 1000]
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { silentLogger } from '../common/logger';
import { Feeder } from '../feeder/feeder';
import { Master } from '../master/master';
import { benchDatabase, runBench } from './run';

const { values: args } = parseArgs({ options: { edits: { type: 'string', default: '1000' } } });
const CLI = path.resolve(__dirname, '..', 'bin', 'taskmaster.js');

function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Math.round(Number(m[1]) / 102.4) / 10 : NaN;
}

function moduleSource(version: number): string {
  const padding = `'${'x'.repeat(20_000)}'`;
  return `const padding = ${padding};\nmodule.exports = function () { return { version: ${version}, pid: process.pid, size: padding.length }; };\n`;
}

async function main(): Promise<void> {
  const edits = Number(args.edits);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'taskmaster-reload-'));
  const file = path.join(dir, 'hot.js');
  fs.writeFileSync(file, moduleSource(0));
  const db = await benchDatabase();
  const master = new Master({
    mongoUrl: db.url,
    dbName: `bench_reload_${Date.now()}`,
    port: 0,
    logger: silentLogger(),
  });
  await master.start();
  const runner = spawn(
    process.execPath,
    // Each edit is complete when written: no need to wait for files to settle.
    [
      CLI,
      'runner',
      '--master',
      master.url,
      '--tasks',
      dir,
      '--workers',
      '1',
      '--runner-id',
      'reload',
      '--module-stable-ms',
      '0',
    ],
    {
      stdio: 'ignore',
      env: { ...process.env, TASKMASTER_LOG_LEVEL: 'warn' },
    },
  );
  const feeder = new Feeder({ master: master.url });
  try {
    await new Promise<void>((resolve) => master.once('runner:up', () => resolve()));
    let child = 0;
    let warm = { runner: 0, child: 0 };
    let half = { runner: 0, child: 0 };
    const t0 = Date.now();
    for (let v = 1; v <= edits; v++) {
      fs.writeFileSync(file, moduleSource(v));
      const [o] = await feeder.work([{ module: 'hot' }]);
      const r = o.result as { version: number; pid: number };
      if (o.state !== 'done' || r.version !== v) throw new Error(`edit ${v}: got ${JSON.stringify(o)}`);
      child = r.pid;
      if (v === 50) warm = { runner: rssMb(runner.pid as number), child: rssMb(child) };
      if (v === Math.floor(edits / 2)) half = { runner: rssMb(runner.pid as number), child: rssMb(child) };
    }
    const end = { runner: rssMb(runner.pid as number), child: rssMb(child) };
    process.stdout.write(
      `${JSON.stringify({
        edits,
        seconds: Number(((Date.now() - t0) / 1000).toFixed(1)),
        runnerRssMb: { after50: warm.runner, halfway: half.runner, atEnd: end.runner },
        childRssMb: { after50: warm.child, halfway: half.child, atEnd: end.child },
        childPid: child,
      })}\n`,
    );
  } finally {
    await feeder.close();
    runner.kill('SIGKILL');
    await master.close();
    await db.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

runBench(main);

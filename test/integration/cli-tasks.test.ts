/**
 * The operator commands as a user runs them (the installed `taskmaster` bin, a real master and
 * database): get, ls, retry, cancel, watch and status, tables and --json, and output piped into
 * `head` ending quietly.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { freePort, ROOT, tempDir } from '../helpers/cluster';
import { eventually } from '../helpers/wait';
import { testDbName } from '../helpers/db';
import { useCluster } from '../helpers/use-cluster';

const CLI = path.join(ROOT, 'bin', 'taskmaster.js');

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function run(file: string, args: string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      file,
      args,
      { env: { ...process.env, ...env }, timeout: 60_000, maxBuffer: 16 * 1024 * 1024 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

describe('taskmaster get, ls, retry, cancel, watch, status', () => {
  const dir = tempDir('cli-tasks');
  const c = useCluster({ dbName: testDbName('cli-tasks'), runners: [{ slots: 4 }], feeder: true });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
  const cli = (...args: string[]) => run(process.execPath, [CLI, ...args], { TASKMASTER_MASTER: c.url });

  test('ls shows a table and --json one task per line; get shows a task and its timeline; status shows tables', async () => {
    await c.feeder.work(
      [
        { id: 'cli-ok', module: 'ok', params: [1] },
        { id: 'cli-bad', module: 'throws', params: ['nope', 'EBAD'], maxAttempts: 1 },
      ],
      { batch: 'cli-list' },
    );
    const ls = await cli('ls', '--batch', 'cli-list');
    expect(ls.code).toBe(0);
    const lines = ls.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^ID\s+STATE\s+MODULE\s+BATCH\s+ATTEMPTS\s+RUNNER\s+CREATED\s+ERROR$/);
    expect(lines.slice(1).map((l) => l.split(/\s+/).slice(0, 2))).toEqual(
      expect.arrayContaining([
        ['cli-ok', 'done'],
        ['cli-bad', 'failed'],
      ]),
    );
    const json = await cli('ls', '--batch', 'cli-list', '--state', 'failed', '--json');
    expect(
      json.stdout
        .trim()
        .split('\n')
        .map((l) => (JSON.parse(l) as { id: string }).id),
    ).toEqual(['cli-bad']);

    const get = await cli('get', 'cli-bad');
    expect(get.stdout).toMatch(/^state\s+failed$/m);
    expect(get.stdout).toMatch(/^error\s+EBAD nope$/m);
    expect(get.stdout).toMatch(/^timeline:\nAT\s+STATE/m);
    const missing = await cli('get', 'no-such-task');
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('404 ENOTFOUND');

    const status = await cli('status');
    expect(status.code).toBe(0);
    expect(status.stdout).toMatch(/^TASKS IN MEMORY\s+ADDED/m);
    expect(status.stdout).toMatch(/^RUNNER\s+STATE\s+SLOTS/m);
    expect(status.stdout).toContain(`${c.runner.runnerId}  ready`);
  });

  test('retry ID reruns a failed task and its dependents; retry --batch --failed and cancel --batch act on a batch', async () => {
    const flag = path.join(dir, 'flag');
    await c.feeder.work(
      [
        { id: 'cli-root', module: 'needs-file', params: [flag], maxAttempts: 1 },
        { id: 'cli-dep', module: 'ok', dependencies: ['cli-root'] },
      ],
      { batch: 'cli-retry' },
    );
    fs.writeFileSync(flag, 'x');
    const retry = await cli('retry', 'cli-root');
    expect(retry.stdout).toBe('retried 2: cli-root cli-dep\n');
    await eventually(async () => {
      const res = await fetch(new URL('/api/tasks/cli-dep', c.url));
      return ((await res.json()) as { task: { state: string } }).task.state === 'done';
    }, 20_000);

    const flag2 = path.join(dir, 'flag2');
    await c.feeder.work([{ id: 'cli-b1', module: 'needs-file', params: [flag2], maxAttempts: 1 }], {
      batch: 'cli-bulk',
    });
    fs.writeFileSync(flag2, 'x');
    const bulk = await cli('retry', '--batch', 'cli-bulk', '--failed', '--json');
    expect(JSON.parse(bulk.stdout)).toEqual({ retried: ['cli-b1'] });

    await c.feeder.add([{ id: 'cli-slow', module: 'slow', params: [30_000] }], { batch: 'cli-cancel' });
    const cancel = await cli('cancel', '--batch', 'cli-cancel');
    expect(cancel.stdout).toBe('cancelled 1: cli-slow\n');
    const usage = await cli('retry');
    expect(usage.code).toBe(2);
    expect(usage.stderr).toContain('give a task id, or --batch NAME --failed');
  });

  test('watch BATCH follows a batch to its end and prints the summary; a failure makes it exit 1', async () => {
    await c.feeder.add(
      [
        { id: 'w-1', module: 'slow', params: [300] },
        { id: 'w-2', module: 'slow', params: [300] },
        { id: 'w-3', module: 'throws', params: ['bad', 'EWATCH'], maxAttempts: 1, dependencies: ['w-1'] },
      ],
      { batch: 'cli-watch' },
    );
    const w = await cli('watch', 'cli-watch', '--interval', '100');
    expect(w.code).toBe(1);
    expect(w.stderr).toContain('not done:');
    expect(w.stderr).toMatch(/w-3\s+failed\s+EWATCH/);
    expect(w.stderr).toMatch(/3 tasks in [\d.]+ (ms|s): 2 done, 1 failed, 0 cancelled/);
  });

  test('ls piped into head ends quietly: exit 0 and no EPIPE trace', async () => {
    await c.feeder.work(
      Array.from({ length: 600 }, (_, i) => ({ id: `pipe-${i}`, module: 'ok', params: ['x'.repeat(50)] })),
      { batch: `pipe-${'b'.repeat(60)}` },
    );
    const r = await run(
      'bash',
      ['-c', `"${process.execPath}" "${CLI}" ls --limit 600 | head -1; echo "status \${PIPESTATUS[0]}"`],
      { TASKMASTER_MASTER: c.url },
    );
    expect(r.stdout).toMatch(/^ID\s+STATE/);
    expect(r.stdout).toContain('status 0');
    expect(r.stderr).not.toMatch(/EPIPE|Error/);
  });

  test('a master that cannot be reached is named with the cause', async () => {
    const closed = `http://127.0.0.1:${await freePort()}`;
    const r = await run(process.execPath, [CLI, 'ls', '--master', closed]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`cannot reach the master at ${closed}: refused (ECONNREFUSED)`);
  });
});

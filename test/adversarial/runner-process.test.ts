/**
 * The runner as a process and as a loader: Ctrl-C in its terminal, a master that sends a module name
 * the runner refuses, a module file caught half-written.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import type { AddressInfo } from 'node:net';
import http from 'node:http';
import path from 'node:path';
import { Server } from 'socket.io';
import type { AttemptResult } from '../../protocol/schemas';
import { Runner } from '../../runner/runner';
import { FIXTURES, ROOT, tempDir, testLogger } from '../helpers/cluster';
import { eventually, waitForEvent, within, WAIT_MS } from '../helpers/wait';
import { useAttackedCluster, TOKEN } from './cluster';

describe('adversarial: runner process and loader', () => {
  const c = useAttackedCluster({ token: TOKEN });

  test("Ctrl-C in the runner's terminal (SIGINT to its process group) does not reach its children: running tasks finish", async () => {
    // Detached: the runner leads a process group, as a shell's foreground job does; the terminal's
    // Ctrl-C is a SIGINT to that whole group.
    const up = waitForEvent(c.master, 'runner:up', (rid) => rid === 'sigint-r');
    const child = spawn(
      process.execPath,
      [path.join(ROOT, 'bin', 'taskmaster.js'), 'runner', '--master', c.master.url, '--token', TOKEN],
      {
        detached: true,
        stdio: 'ignore',
        env: {
          ...process.env,
          TASKMASTER_TASKS: FIXTURES,
          TASKMASTER_WORKERS: '2',
          TASKMASTER_SLOTS: '4',
          TASKMASTER_RUNNER_ID: 'sigint-r',
          TASKMASTER_LOG_FORMAT: 'json',
        },
      },
    );
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    try {
      await up;
      const f = await c.startFeeder();
      const refs = await f.add(
        Array.from({ length: 4 }, () => ({
          module: 'slow',
          params: [1500],
          maxAttempts: 1,
          runner: 'sigint-r',
        })),
      );
      await eventually(async () =>
        refs.every((r) => c.master.scheduler.tasks.get(r.id)?.state === 'running'),
      );
      process.kill(-(child.pid as number), 'SIGINT');
      const outcomes = await f.wait(refs);
      expect(outcomes.map((o) => o.state)).toEqual(['done', 'done', 'done', 'done']);
      expect(await within(WAIT_MS, exited, 'the runner to exit after SIGINT')).toBe(0);
    } finally {
      if (child.exitCode === null) process.kill(-(child.pid as number), 'SIGKILL');
    }
    await c.assertAlive();
  });

  test('a module name the runner refuses, sent by a master that let it by, comes back as an EMODULE result', async () => {
    // The real master validates module names exactly as the runner does, so it cannot send one: a
    // scripted master stands in for an older or broken one.
    const server = http.createServer();
    const io = new Server(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const results: AttemptResult[] = [];
    const got = new Promise<void>((resolve) => {
      io.of('/runner').on('connection', (s) => {
        s.on('runner:hello', (_h, ack: (r: unknown) => void) => {
          ack({ ok: true, runnerId: 'scripted', drop: [] });
          s.emit('task:assign', {
            tasks: [
              { id: 'bad', attempt: 1, module: '../../etc/passwd', params: [], priority: 0 },
              { id: 'good', attempt: 1, module: 'ok', params: [1], priority: 0 },
            ],
          });
        });
        s.on('task:results', (p: { results: AttemptResult[] }, ack: (r: unknown) => void) => {
          results.push(...p.results);
          ack({ ok: true, accepted: p.results.length, stale: 0 });
          if (results.length >= 2) resolve();
        });
      });
    });
    const runner = new Runner({
      master: url,
      tasks: [FIXTURES],
      workers: 1,
      watch: false,
      logger: testLogger(),
    });
    try {
      await runner.start();
      await within(20_000, got, 'results for both assignments');
      const byId = new Map(results.map((r) => [r.id, r]));
      expect(byId.get('bad')).toMatchObject({ ok: false, unrecoverable: true, error: { code: 'EMODULE' } });
      expect(byId.get('good')).toMatchObject({ ok: true, result: [1] });
    } finally {
      await runner.close();
      io.close();
      server.close();
    }
    await c.assertAlive();
  });

  test('a module file caught half-written is not loaded: tasks run the version that settled', async () => {
    const dir = tempDir('half-written');
    const file = path.join(dir, 'edit.js');
    fs.writeFileSync(file, 'module.exports = () => "old";');
    // Settled long ago, as a file in use would be.
    const past = new Date(Date.now() - 60_000);
    fs.utimesSync(file, past, past);
    const runner = await c.startRunner({
      runnerId: 'half-r',
      tasks: [dir],
      slots: 5,
      watch: true,
      moduleStableMs: 1500,
    });
    const f = await c.startFeeder();
    expect(await f.work([{ module: 'edit', runner: 'half-r' }])).toMatchObject([{ result: 'old' }]);

    // An editor's write in two steps: the first half happens to compile on its own.
    fs.writeFileSync(file, 'module.exports = () => "partial"; //');
    const refs = await f.add(Array.from({ length: 5 }, () => ({ module: 'edit', runner: 'half-r' })));
    // The write is still going on: no task may finish on the half that is there.
    let waitTimer: NodeJS.Timeout | undefined;
    const early = await Promise.race([
      f.outcome(refs[0].id).then((o) => `finished with ${JSON.stringify(o.result)}`),
      new Promise((r) => (waitTimer = setTimeout(() => r('still waiting'), 700))),
    ]);
    clearTimeout(waitTimer);
    expect(early).toBe('still waiting');
    fs.appendFileSync(file, '\nmodule.exports = () => "full";');
    const outcomes = await Promise.all(refs.map((r) => f.outcome(r.id)));
    expect(outcomes.map((o) => o.result)).toEqual(['full', 'full', 'full', 'full', 'full']);
    await runner.close();
    await c.assertAlive();
  });
});

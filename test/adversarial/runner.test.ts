/**
 * What a task or a master can do to a runner: oversized and unserialisable results, module names it
 * refuses, exec tasks that try to pick which program runs. Real master, real runner, real database.
 */
import fs from 'node:fs';
import path from 'node:path';
import { useAttackedCluster, TOKEN } from './cluster';
import { tempDir } from '../helpers/cluster';

describe('adversarial: runner', () => {
  // A small message limit, so an oversized result is cheap to make.
  const c = useAttackedCluster({ token: TOKEN, maxMessageBytes: 256 * 1024 });

  test('a result over the limit fails its task with ETOOLARGE, not retried; the runner stays connected and its other results arrive', async () => {
    const runner = await c.startRunner({ runnerId: 'big-r', slots: 3 });
    let disconnects = 0;
    runner.on('disconnect', () => disconnects++);
    const f = await c.startFeeder();
    const outcomes = await f.work([
      { module: 'big-result', params: [10], runner: 'big-r' },
      { module: 'big-result', params: [300 * 1024], runner: 'big-r', maxAttempts: 3 },
      { module: 'big-result', params: [20], runner: 'big-r' },
    ]);
    expect(outcomes[0]).toMatchObject({ state: 'done', result: 'x'.repeat(10) });
    expect(outcomes[1]).toMatchObject({ state: 'failed', attempts: 1, error: { code: 'ETOOLARGE' } });
    expect(outcomes[2]).toMatchObject({ state: 'done', result: 'x'.repeat(20) });
    expect(disconnects).toBe(0);
    // The runner's own limit is capped under the master's message limit it was told.
    expect(runner.maxResultBytes).toBeLessThan(256 * 1024);
    const [after] = await f.work([{ module: 'ok', params: ['after'], runner: 'big-r' }]);
    expect(after).toMatchObject({ state: 'done', result: ['after'] });
    await runner.close();
    await c.assertAlive();
  });

  test('a result JSON cannot carry (BigInt) fails at once: the failure is deterministic', async () => {
    const runner = await c.startRunner({ runnerId: 'bigint-r' });
    const f = await c.startFeeder();
    const [o] = await f.work([{ module: 'bigint', runner: 'bigint-r', maxAttempts: 3 }]);
    expect(o).toMatchObject({
      state: 'failed',
      attempts: 1,
      error: { code: 'ETASK', message: expect.stringContaining('not JSON-serialisable') },
    });
    await runner.close();
    await c.assertAlive();
  });

  describe('exec', () => {
    let dir: string;
    beforeAll(() => {
      // A folder holding its own `echo`: if it ran, the allow-list would mean nothing.
      dir = tempDir('fake-bin');
      fs.writeFileSync(path.join(dir, 'echo'), '#!/bin/sh\nprintf HIJACKED\n', { mode: 0o755 });
    });

    test('env PATH naming a folder with its own `echo` is refused; LD_PRELOAD too; the allowed echo runs', async () => {
      const runner = await c.startRunner({ runnerId: 'exec-r', allowExec: ['echo'] });
      const f = await c.startFeeder();
      const outcomes = await f.work([
        { module: 'exec', params: ['echo', ['hi'], { env: { PATH: dir } }], runner: 'exec-r' },
        {
          module: 'exec',
          params: ['echo', ['hi'], { env: { LD_PRELOAD: path.join(dir, 'x.so') } }],
          runner: 'exec-r',
        },
        { module: 'exec', params: ['echo', ['hi'], { env: { Path: dir } }], runner: 'exec-r' },
        { module: 'exec', params: ['echo', ['hi'], { env: { GREETING: 'x' } }], runner: 'exec-r' },
      ]);
      for (const o of outcomes.slice(0, 3))
        expect(o).toMatchObject({ state: 'failed', attempts: 1, error: { code: 'EVALIDATION' } });
      expect(outcomes[3]).toMatchObject({ state: 'done', result: { code: 0, stdout: 'hi\n' } });
      await runner.close();
      await c.assertAlive();
    });

    test('the allowed program is the one found at start-up, whatever PATH holds later', async () => {
      const runner = await c.startRunner({ runnerId: 'exec-r2', allowExec: ['echo'] });
      const saved = process.env.PATH;
      process.env.PATH = `${dir}${path.delimiter}${saved}`;
      try {
        const f = await c.startFeeder();
        const [o] = await f.work([{ module: 'exec', params: ['echo', ['plain']], runner: 'exec-r2' }]);
        expect(o).toMatchObject({ state: 'done', result: { stdout: 'plain\n' } });
      } finally {
        process.env.PATH = saved;
      }
      await runner.close();
      await c.assertAlive();
    });

    test('maxOutput above the cap is refused', async () => {
      const runner = await c.startRunner({ runnerId: 'exec-r3', allowExec: ['echo'] });
      const f = await c.startFeeder();
      const [o] = await f.work([
        { module: 'exec', params: ['echo', ['x'], { maxOutput: 19 * 1024 * 1024 }], runner: 'exec-r3' },
      ]);
      expect(o).toMatchObject({
        state: 'failed',
        error: { code: 'EVALIDATION', message: expect.stringContaining('maxOutput') },
      });
      await runner.close();
      await c.assertAlive();
    });
  });
});

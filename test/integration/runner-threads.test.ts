/**
 * Runners with `isolation: 'thread'` against the real master: tasks run in worker threads of the
 * runner's process, with the same outcomes a child process gives (results, ETO after a busy loop,
 * ECRASH, recycling, hot-load, cancel).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { TaskOutcome } from '../../protocol/schemas';
import { FIXTURES } from '../helpers/cluster';
import { useCluster } from '../helpers/use-cluster';
import { waitForEvent } from '../helpers/wait';

jest.setTimeout(60_000);

const DIR = fs.mkdtempSync(path.join(os.tmpdir(), 'taskmaster-threads-'));
fs.writeFileSync(
  path.join(DIR, 'where.js'),
  `const { threadId, isMainThread } = require('node:worker_threads');
  module.exports = (label = null) => ({ label, pid: process.pid, threadId, isMainThread });`,
);
const hot = (v: number) => `module.exports = () => ({ version: ${v} });`;
fs.writeFileSync(path.join(DIR, 'hot.js'), hot(1));
fs.writeFileSync(
  path.join(DIR, 'async-throw.js'),
  'module.exports = function () { setTimeout(() => { throw new Error("late boom"); }, 5); };',
);

// The kill grace leaves a task that honours its signal time to let go on a busy machine: a thread
// replaced for being slow would fail the test that its thread stays.
const c = useCluster({
  runners: [
    { runnerId: 'threads-1', tasks: [FIXTURES, DIR], isolation: 'thread', slots: 2, killGraceMs: 1500 },
  ],
  runnerOptions: { moduleStableMs: 0 },
  feeder: true,
});
afterAll(() => fs.rmSync(DIR, { recursive: true, force: true }));

interface Where {
  label: unknown;
  pid: number;
  threadId: number;
  isMainThread: boolean;
}

async function where(label: unknown = null, runner = 'threads-1'): Promise<Where> {
  const [o] = await c.feeder.work([{ module: 'where', params: [label], runner }]);
  expect(o).toMatchObject({ state: 'done' });
  return o.result as Where;
}

describe('runner --isolation thread', () => {
  test("a task runs in a worker thread of the runner's process and its result reaches the master", async () => {
    expect(await where('x')).toEqual({
      label: 'x',
      pid: process.pid,
      threadId: expect.any(Number),
      isMainThread: false,
    });
    const [ts] = await c.feeder.work([{ module: 'ts-task', params: [{ a: 1, b: 2 }] }]);
    expect(ts).toMatchObject({ state: 'done', result: { sum: 3 } });
    expect(c.runner.pids).toEqual([]);
  });

  test('a busy loop past its runTimeout fails with ETO, its thread is terminated, and the next task runs in a fresh one', async () => {
    const before = await where();
    const [spin] = await c.feeder.work([{ module: 'cpu-loop', runTimeout: 300, maxAttempts: 1 }]);
    expect(spin).toMatchObject({ state: 'failed', error: { code: 'ETO' } });
    const after = await where('after');
    expect(after.label).toBe('after');
    expect(after.threadId).not.toBe(before.threadId);
  });

  test('an uncaught error in a thread is ECRASH, retried, and names the error', async () => {
    const [crash] = await c.feeder.work([{ module: 'async-throw', maxAttempts: 2 }]);
    expect(crash).toMatchObject({ state: 'failed', attempts: 2, error: { code: 'ECRASH' } });
    expect(crash.error?.message).toContain('late boom');
    expect((await where('alive')).label).toBe('alive');
  });

  test('a module edited on disk: the next task runs the new code', async () => {
    const [v1] = await c.feeder.work([{ module: 'hot' }]);
    expect(v1).toMatchObject({ state: 'done', result: { version: 1 } });
    const announced = waitForEvent(c.runner, 'modules', undefined, {
      what: 'the runner announcing hot.js v2',
    });
    fs.writeFileSync(path.join(DIR, 'hot.js'), hot(2));
    await announced;
    const [v2] = await c.feeder.work([{ module: 'hot' }]);
    expect(v2).toMatchObject({ state: 'done', result: { version: 2 } });
  });

  test('cancel: a task honouring its signal lets go and its thread stays; a busy loop has its thread terminated', async () => {
    const first = await where();
    const outcome = (id: string): Promise<TaskOutcome> => c.feeder.outcome(id);

    let started = waitForEvent(c.runner, 'started', undefined, { what: 'the slow task starting' });
    const [slow] = await c.feeder.add([{ module: 'slow', params: [30_000] }]);
    await started;
    expect(await c.feeder.cancel(slow.id)).toEqual([slow.id]);
    expect(await outcome(slow.id)).toMatchObject({ state: 'cancelled' });
    expect((await where()).threadId).toBe(first.threadId);

    started = waitForEvent(c.runner, 'started', undefined, { what: 'the busy loop starting' });
    const [spin] = await c.feeder.add([{ module: 'cpu-loop' }]);
    await started;
    expect(await c.feeder.cancel(spin.id)).toEqual([spin.id]);
    expect(await outcome(spin.id)).toMatchObject({ state: 'cancelled' });
    const [next] = await c.feeder.work([{ module: 'where', params: ['next'], runner: 'threads-1' }]);
    expect(next).toMatchObject({ state: 'done', result: { label: 'next' } });
    expect((next.result as Where).threadId).not.toBe(first.threadId);
  });

  test('maxTasksPerWorker 2: five tasks in a row run in three threads, 2 + 2 + 1', async () => {
    await c.startRunner({
      runnerId: 'threads-recycle',
      tasks: [FIXTURES, DIR],
      isolation: 'thread',
      maxTasksPerWorker: 2,
    });
    const threads: number[] = [];
    for (let i = 0; i < 5; i++) threads.push((await where(i, 'threads-recycle')).threadId);
    const [a, b, d] = [threads[0], threads[2], threads[4]];
    expect(threads).toEqual([a, a, b, b, d]);
    expect(new Set([a, b, d]).size).toBe(3);
  });
});

/**
 * A task can print without end, with or without newlines. The runner logs each line of a worker's
 * output, so it must not keep what it cannot log: a line is cut at 16 KiB and at most 1 MiB is logged
 * per attempt. The runner runs as its own process, so its peak resident memory (VmHWM) is its own;
 * each test floods it, then checks the bound, that the task's result arrived, and that the runner
 * and the master still do honest work.
 */
import fs from 'node:fs';
import { MAX_OUTPUT_BYTES_PER_ATTEMPT, MAX_OUTPUT_LINE_BYTES } from '../../runner/child-output';
import { spawnRunner, type Proc } from '../helpers/cluster';
import type { TestFeeder } from '../helpers/clients';
import { useAttackedCluster } from './cluster';

const MB = 1024 * 1024;

describe('adversarial: output floods', () => {
  let runner: Proc;
  let feeder: TestFeeder;

  afterAll(async () => {
    await runner?.kill('SIGKILL');
  });
  const cluster = useAttackedCluster();
  beforeAll(async () => {
    runner = await spawnRunner(cluster.master, 'flooded', ['--slots', '1']);
    feeder = await cluster.startFeeder({ waitMs: 110_000 });
  });

  /** The runner process's peak resident memory so far, in MB. */
  const peakMb = () => {
    const status = fs.readFileSync(`/proc/${runner.child.pid}/status`, 'utf8');
    return Math.round(Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1]) / 1024);
  };
  /** The runner's log lines (JSON) about a worker's output, from `from` characters of its output on. */
  const outputLines = (from: number) =>
    runner
      .output()
      .slice(from)
      .split('\n')
      .slice(0, -1) // a line still being written
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { message: string; stream?: string; droppedBytes?: number });

  const flood = async (params: unknown[]) => {
    const [o] = await feeder.work([{ module: 'flood', params, runner: 'flooded', timeout: 100_000 }]);
    return o;
  };

  /** The runner answers an honest task; the master passes its own closing check. */
  const assertAlive = async () => {
    const [o] = await feeder.work([{ module: 'ok', params: ['after'], runner: 'flooded', timeout: 20_000 }]);
    expect(o).toMatchObject({ state: 'done', result: ['after'] });
    await cluster.assertAlive();
  };

  test('700 MB on stdout without a newline: the task completes, one line of 16 KiB is logged with a marker, runner peak RSS under 250 MB', async () => {
    const from = runner.output().length;
    const o = await flood([700 * MB]);
    expect(o).toMatchObject({ state: 'done', result: { written: 700 * MB } });
    const lines = outputLines(from).filter((l) => l.stream === 'stdout');
    expect(lines).toHaveLength(1);
    expect(lines[0].message).toMatch(
      /^x{16384} … \[line cut at 16384 bytes; the rest of it is not logged\]$/,
    );
    expect(peakMb()).toBeLessThan(250);
    await assertAlive();
  }, 120_000);

  test('700 MB without a newline written straight to the worker’s channel: the worker is killed (ECRASH naming the limit), runner peak RSS under 250 MB', async () => {
    const [o] = await feeder.work([
      // The worker is killed within its first MiBs; a runner reading without a bound would instead
      // wait for a newline that never comes, until this timeout.
      { module: 'flood-channel', params: [700 * MB], runner: 'flooded', maxAttempts: 1, timeout: 30_000 },
    ]);
    expect(o).toMatchObject({
      state: 'failed',
      error: {
        code: 'ECRASH',
        message: expect.stringMatching(/killed: it sent a message over \d+ bytes to the runner$/),
      },
    });
    expect(peakMb()).toBeLessThan(250);
    await assertAlive();
  }, 120_000);

  test('a result of 50 MB is not sent whole from its worker: ETOOLARGE naming the limit, not retried, runner peak RSS under 250 MB', async () => {
    const [o] = await feeder.work([
      { module: 'big-result', params: [50 * MB], runner: 'flooded', maxAttempts: 3, timeout: 100_000 },
    ]);
    expect(o).toMatchObject({
      state: 'failed',
      attempts: 1,
      error: { code: 'ETOOLARGE', message: expect.stringContaining(`the result is ${50 * MB + 2} bytes`) },
    });
    expect(peakMb()).toBeLessThan(250);
    await assertAlive();
  }, 120_000);

  test('this.log of a 50 MB line and this.add of 50 MB: the line is cut at 16 KiB, the add refused with ETOOLARGE, the worker lives, runner peak RSS under 250 MB', async () => {
    const from = runner.output().length;
    const [o] = await feeder.work([
      { module: 'big-log-add', params: [50 * MB], runner: 'flooded', maxAttempts: 1 },
    ]);
    expect(o).toMatchObject({ state: 'done', result: { addError: 'ETOOLARGE' } });
    const line = outputLines(from).find((l) => l.message.startsWith('zzz')) as {
      message: string;
      metaLeftOut?: string;
    };
    expect(line.message).toBe(`${'z'.repeat(16384)} … [cut at 16384 characters]`);
    expect(line.metaLeftOut).toMatch(/^\d+ bytes as JSON, over 16384$/);
    const [next] = await feeder.work([{ module: 'big-log-add', params: [10], runner: 'flooded' }]);
    expect(next).toMatchObject({
      state: 'done',
      result: { addError: null, pid: (o.result as { pid: number }).pid },
    });
    expect(peakMb()).toBeLessThan(250);
  }, 120_000);

  test('200 MB on stderr in lines of 1 KiB: at most 1 MiB of it logged for the attempt, then the rest counted, runner peak RSS under 250 MB', async () => {
    const from = runner.output().length;
    const o = await flood([200 * MB, 1024, 'stderr']);
    expect(o).toMatchObject({ state: 'done', result: { written: 200 * MB } });
    // The summary of what was left out comes with the next attempt's fresh budget.
    await assertAlive();
    const lines = outputLines(from);
    const logged = lines.filter((l) => l.stream === 'stderr' && /^y+$/.test(l.message));
    expect(logged.length).toBeGreaterThan(0);
    expect(logged.every((l) => l.message.length === 1023)).toBe(true);
    expect(logged.reduce((n, l) => n + l.message.length, 0)).toBeLessThanOrEqual(
      MAX_OUTPUT_BYTES_PER_ATTEMPT,
    );
    expect(lines.filter((l) => /the rest is not logged$/.test(l.message))).toHaveLength(1);
    const dropped = lines.find((l) => l.message === 'task output not logged: over the limit per attempt');
    expect(dropped?.droppedBytes).toBe((200 * 1024 - logged.length) * 1023);
    expect(peakMb()).toBeLessThan(250);
    expect(MAX_OUTPUT_LINE_BYTES).toBe(16 * 1024);
  }, 120_000);
});

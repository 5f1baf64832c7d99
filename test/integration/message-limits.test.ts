/**
 * The size limits agree: with default settings a task or a result up to the documented default goes
 * through, one message carries it, and a larger one is refused with a message naming the settings
 * that bound it — never a transport that closes the connection and a client that resends forever.
 */
import { Master as MasterClass } from '../../master/master';
import { MASTER_DEFAULTS } from '../../master/options';
import { ENVELOPE_BYTES, messageRoom } from '../../protocol/limits';
import { capturingLogger } from '../helpers/capture';
import { startFeeder, startRunner } from '../helpers/clients';
import { testMongoUrl } from '../helpers/db';
import { eventually } from '../helpers/wait';
import { useCluster } from '../helpers/use-cluster';

/** What one message of the default limit carries: 1 MiB less 16 KiB. */
const ROOM = messageRoom(MASTER_DEFAULTS.maxMessageBytes);

describe('message limits with default settings', () => {
  const closers: (() => Promise<unknown>)[] = [];
  // Declared before the cluster, so the clients the tests made close before the master does.
  afterAll(async () => {
    for (const close of closers.reverse()) await close();
  });
  const c = useCluster();

  test('the documented defaults: a task and a result carry up to 1 MiB less 16 KiB', () => {
    expect(ROOM).toBe(1_032_192);
    expect(c.master.opts.maxTaskBytes).toBe(ROOM);
  });

  test('a result just under the default goes through; one just over fails with ETOOLARGE naming the master setting', async () => {
    const runner = await startRunner(c.url, { runnerId: 'default-limits', slots: 2, workers: 2 });
    closers.push(() => runner.close());
    expect(runner.maxResultBytes).toBe(ROOM);
    const feeder = await startFeeder(c.url);
    closers.push(() => feeder.close());
    // big-result returns a string of N characters: N + 2 bytes as JSON.
    const [fits, over] = await feeder.work([
      { module: 'big-result', params: [ROOM - 2] },
      { module: 'big-result', params: [ROOM - 1], maxAttempts: 3 },
    ]);
    expect(fits).toMatchObject({ state: 'done' });
    expect((fits.result as string).length).toBe(ROOM - 2);
    expect(over).toMatchObject({ state: 'failed', attempts: 1, error: { code: 'ETOOLARGE' } });
    expect(over.error?.message).toContain(`--max-message-bytes ${MASTER_DEFAULTS.maxMessageBytes}`);
    expect(over.error?.message).toContain(`${ENVELOPE_BYTES} bytes of envelope`);
  });

  test('a runner whose --max-result-bytes one message cannot carry says so at connect, and its refusals name both settings', async () => {
    const { logger, lines } = capturingLogger();
    const runner = await startRunner(c.url, {
      runnerId: 'raised-limit',
      maxResultBytes: 4 * 1024 * 1024,
      logger,
    });
    closers.push(() => runner.close());
    await eventually(() =>
      lines.some((l) => /--max-result-bytes is more than one message/.test(String(l.message))),
    );
    expect(lines.find((l) => /--max-result-bytes is more than/.test(String(l.message)))).toMatchObject({
      level: 'warn',
      maxResultBytes: 4 * 1024 * 1024,
      masterMaxMessageBytes: MASTER_DEFAULTS.maxMessageBytes,
      largestResult: ROOM,
    });
    const feeder = await startFeeder(c.url);
    closers.push(() => feeder.close());
    const [o] = await feeder.work([
      { module: 'big-result', params: [2 * 1024 * 1024], runner: 'raised-limit' },
    ]);
    expect(o.error?.code).toBe('ETOOLARGE');
    expect(o.error?.message).toContain("the runner's --max-result-bytes 4194304 is larger, but cannot pass");
    expect(o.error?.message).toContain('--max-message-bytes 1048576');
  });

  test('a task as large as the default passes; a larger one is refused by the feeder naming both master settings', async () => {
    const runner = await startRunner(c.url, { runnerId: 'big-params' });
    closers.push(() => runner.close());
    const feeder = await startFeeder(c.url);
    closers.push(() => feeder.close());
    // {"module":"ok","params":["…"],"runner":"big-params"} plus the string: exactly the default.
    const frame = JSON.stringify({ module: 'ok', params: [''], runner: 'big-params' }).length;
    // The result ([string]) is 2 bytes shorter than the task: it fits too.
    const [o] = await feeder.work([
      { module: 'ok', params: ['p'.repeat(ROOM - frame)], runner: 'big-params' },
    ]);
    expect(o).toMatchObject({ state: 'done' });
    await expect(feeder.add([{ module: 'ok', params: ['p'.repeat(ROOM)] }])).rejects.toMatchObject({
      code: 'EVALIDATION',
      message: expect.stringMatching(/tasks\[0\]: .*--max-message-bytes 1048576 .*--max-task-bytes/),
    });
  });

  test('a master whose --max-task-bytes one message cannot carry refuses to start, naming both settings', () => {
    expect(() => new MasterClass({ mongoUrl: testMongoUrl(), maxTaskBytes: 2 * 1024 * 1024 })).toThrow(
      /--max-task-bytes\) 2097152 does not fit in one message: at most maxMessageBytes \(--max-message-bytes\) 1048576/,
    );
    expect(
      () =>
        new MasterClass({
          mongoUrl: testMongoUrl(),
          maxTaskBytes: 2 * 1024 * 1024,
          maxMessageBytes: 4 * 1024 * 1024,
        }),
    ).not.toThrow();
  });
});

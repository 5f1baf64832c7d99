/**
 * Logs a person can follow: at info level the master says when a batch is added and when it
 * finished (counts, duration), when recovery finished, and when a runner is drained; a runner or a
 * feeder that cannot reach the master warns once, with the cause, and keeps retrying until it can.
 */
import { Feeder } from '../../feeder/feeder';
import { Master } from '../../master/master';
import { Runner } from '../../runner/runner';
import { capturingLogger } from '../helpers/capture';
import { FIXTURES, freePort } from '../helpers/cluster';
import { testDbName, testMongoUrl } from '../helpers/db';
import { startRunner } from '../helpers/clients';
import { eventually } from '../helpers/wait';

/** Resolves with the first line matching, polling the captured lines (bounded). */
function line(
  lines: Record<string, unknown>[],
  test: (l: Record<string, unknown>) => boolean,
  what: string,
  timeout = 15_000,
): Promise<Record<string, unknown>> {
  return eventually(() => lines.find(test), { timeout, what: `a log line: ${what}` });
}

describe('logs', () => {
  test('the master logs recovery, each batch added and finished with its counts and duration, and a drain', async () => {
    const { logger, lines } = capturingLogger();
    const master = new Master({ mongoUrl: testMongoUrl(), dbName: testDbName('logs'), port: 0, logger });
    await master.start();
    const runner = await startRunner(master.url);
    const feeder = new Feeder({ master: master.url });
    try {
      await line(lines, (l) => l.message === 'recovery finished' && l.level === 'info', 'recovery finished');
      await feeder.work([{ module: 'ok' }, { module: 'throws', maxAttempts: 1 }], { batch: 'logged' });
      const added = await line(lines, (l) => l.message === 'batch added', 'batch added');
      expect(added).toMatchObject({ level: 'info', batch: 'logged', tasks: 2 });
      const finished = await line(lines, (l) => l.message === 'batch finished', 'batch finished');
      expect(finished).toMatchObject({
        level: 'info',
        batch: 'logged',
        tasks: 2,
        done: 1,
        failed: 1,
        cancelled: 0,
      });
      expect(finished.durationMs).toEqual(expect.any(Number));
      master.scheduler.drain(runner.runnerId);
      await line(
        lines,
        (l) => l.message === 'runner drained: no new work' && l.runnerId === runner.runnerId,
        'drained',
      );
    } finally {
      await feeder.close();
      await runner.close();
      await master.close();
    }
  });

  test('a runner and a feeder that cannot reach the master warn once with the cause, and connect when it comes', async () => {
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const r = capturingLogger();
    const f = capturingLogger();
    const runner = new Runner({
      master: url,
      tasks: [FIXTURES],
      workers: 1,
      logger: r.logger,
      reconnectDelayMs: 50,
      reconnectDelayMaxMs: 100,
    });
    const feeder = new Feeder({
      master: url,
      logger: f.logger,
      reconnectDelayMs: 50,
      reconnectDelayMaxMs: 100,
    });
    const started = runner.start();
    let master: Master | null = null;
    try {
      for (const { lines } of [r, f]) {
        const warn = await line(
          lines,
          (l) => l.message === 'cannot reach the master; retrying',
          'unreachable warning',
        );
        expect(warn).toMatchObject({ level: 'warn', master: url });
        expect(warn.cause).toMatch(/^refused \(ECONNREFUSED\)/);
      }
      // Several failed attempts later, still one warning each.
      await line(
        r.lines,
        (l) => l.message === 'cannot reach the master' && l.level === 'debug',
        'a later failure',
      );
      expect(r.lines.filter((l) => l.message === 'cannot reach the master; retrying')).toHaveLength(1);
      master = new Master({
        mongoUrl: testMongoUrl(),
        dbName: testDbName('logs-late'),
        port,
        logger: capturingLogger().logger,
      });
      await master.start();
      await started;
      await feeder.ready();
    } finally {
      await feeder.close();
      await runner.close();
      await master?.close();
    }
  });
});

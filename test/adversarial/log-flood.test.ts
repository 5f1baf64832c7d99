/**
 * A client cannot write the master's log at the rate it sends: malformed messages, stale results and
 * reconnects are logged at most 5 times per client and cause per 10 s, and one line per window says
 * how many were left out. Real master, real sockets; the master's log is read as it writes it.
 */
import type { Socket } from 'socket.io-client';
import { LogLimiter, logLimiter } from '../../common/log-limit';
import { capturingLogger } from '../helpers/capture';
import { eventually } from '../helpers/wait';
import { assertMasterAlive, rawSocket } from './cluster';
import { useCluster } from '../helpers/use-cluster';

describe('adversarial: log floods', () => {
  const sockets: Socket[] = [];
  afterAll(() => {
    for (const s of sockets) s.close();
  });
  const captured = capturingLogger();
  const lines = captured.lines;
  const c = useCluster({ masterOptions: { logger: captured.logger } });

  /** Lines with this message (about runner `runner`, when given). */
  const count = (message: string, runner?: string) =>
    lines.filter((l) => l.message === message && (runner === undefined || l.runnerId === runner)).length;
  /** What the summaries of keys about `about` (when given) say they left out. */
  const said = (prefix: string, about = '') =>
    lines
      .filter(
        (l) =>
          String(l.message).startsWith(prefix) &&
          typeof l.suppressed === 'number' &&
          String(l.limitKey).includes(about),
      )
      .reduce((n, l) => n + (l.suppressed as number), 0);

  test('10,000 malformed messages from one socket: at most 5 lines logged for it, the rest counted', async () => {
    const s = await rawSocket(c.url, '/feeder');
    sockets.push(s);
    const acks: Promise<unknown>[] = [];
    for (let i = 0; i < 10_000; i++) acks.push(s.timeout(30_000).emitWithAck('tasks:add', { tasks: 'nope' }));
    await Promise.all(acks);
    expect(count('malformed payload refused')).toBe(5);
    logLimiter.flush(); // the window's end, without waiting 10 s for it
    expect(said('malformed payload refused (and')).toBe(9_995);
    await assertMasterAlive(c.url);
  });

  test('10,000 stale results and 200 reconnects of one runner: at most 5 lines each per 10 s', async () => {
    const began = Date.now();
    const hello = { runnerId: 'flood-r', slots: 1, workers: 1 };
    const results = Array.from({ length: 10_000 }, (_, i) => ({ id: `ghost-${i}`, attempt: 1, ok: true }));
    let s = await rawSocket(c.url, '/runner');
    expect(await s.timeout(10_000).emitWithAck('runner:hello', hello)).toMatchObject({ ok: true });
    // One result per message: each one is a stale result of its own.
    const acks = results.map((r) => s.timeout(30_000).emitWithAck('task:results', { results: [r] }));
    expect((await Promise.all(acks)).every((a) => (a as { stale: number }).stale === 1)).toBe(true);
    for (let i = 0; i < 200; i++) {
      s.close();
      await eventually(() => c.master.listRunners().find((r) => r.id === 'flood-r')?.connected === false);
      s = await rawSocket(c.url, '/runner');
      await s.timeout(10_000).emitWithAck('runner:hello', hello);
    }
    sockets.push(s);
    // 5 lines per 10 s window of each key (the test may span more than one, and a key's windows need
    // not line up with the test's start); every other line is counted.
    const windows = Math.ceil((Date.now() - began) / 10_000) + 1;
    logLimiter.flush();
    for (const [message, total] of [
      ['stale result ignored', 10_000],
      ['runner ready', 201],
      ['runner disconnected', 200],
    ] as const) {
      expect(count(message, 'flood-r')).toBeLessThanOrEqual(5 * windows);
      expect(count(message, 'flood-r') + said(`${message} (and`, 'flood-r')).toBe(total);
    }
    await assertMasterAlive(c.url);
  });
});

describe('LogLimiter', () => {
  test('a new window logs again and says how many lines the last one left out; keys are bounded', () => {
    const { logger, lines } = capturingLogger();
    const limiter = new LogLimiter({ burst: 2, windowMs: 50, maxKeys: 3 });
    for (let i = 0; i < 10; i++) limiter.line(logger, 'warn', 'a', 'flood', { i });
    expect(lines.map((l) => l.i)).toEqual([0, 1]);
    const until = Date.now() + 60;
    while (Date.now() < until); // the window passes (a busy wait of 60 ms keeps this test synchronous)
    limiter.line(logger, 'warn', 'a', 'flood', { i: 10 });
    expect(lines.slice(2)).toMatchObject([
      { message: 'flood (and 8 more like it, not logged)', suppressed: 8, limitKey: 'a' },
      { message: 'flood', i: 10 },
    ]);
    // More keys than it tracks: the oldest is summarised and forgotten.
    for (const k of ['b', 'c', 'd', 'e'])
      for (let i = 0; i < 3; i++) limiter.line(logger, 'info', k, `m-${k}`);
    expect(lines.filter((l) => String(l.message).includes('more like it')).map((l) => l.limitKey)).toEqual([
      'a',
      'b',
    ]);
  });
});

/**
 * Recipients that stop reading, against a master running as its own process: dashboards and feeders
 * pause their sockets while system messages are broadcast to every client and dashboard ticks carry
 * every runner's data. The master's per-connection buffers are read from its /metrics (the most
 * bytes seen waiting for one connection), its memory from /proc.
 */
import fs from 'node:fs';
import { spawnMaster, type MasterProcess } from '../helpers/cluster';
import { testDbName } from '../helpers/db';
import { MAX_RUNNER_DATA_BYTES } from '../../protocol/limits';
import { assertMasterAlive, httpRequest, TOKEN } from './cluster';
import { eventually } from '../helpers/wait';
import { WireClient } from './wire';

const LIMIT = 2 * 1024 * 1024;

/** Messages of `size` bytes that fill a paused reader's kernel buffers and `limit` beyond them. */
function burstFor(limit: number, size: number): number {
  const field = (file: string, i: number, fallback: number) => {
    try {
      return Number(fs.readFileSync(file, 'utf8').trim().split(/\s+/)[i]) || fallback;
    } catch {
      return fallback; // not Linux: the sizes below are Linux's defaults
    }
  };
  const send = field('/proc/sys/net/ipv4/tcp_wmem', 2, 4 * 1024 * 1024);
  const receive = field('/proc/sys/net/ipv4/tcp_rmem', 1, 128 * 1024);
  return Math.ceil((send + receive + limit) / size) + 1;
}
const MESSAGE = 1024 * 1024;

describe('adversarial: recipients that stop reading (master as a process)', () => {
  let master: MasterProcess;
  const open: WireClient[] = [];

  beforeAll(async () => {
    master = await spawnMaster(testDbName(__filename), [
      '--token',
      TOKEN,
      '--max-buffered-bytes',
      String(LIMIT),
    ]);
  });
  afterAll(async () => {
    for (const w of open) w.close();
    await master?.kill('SIGKILL');
  });

  const client = async (nsp: string) => {
    const w = await WireClient.open(master.url, { nsp, token: TOKEN });
    open.push(w);
    return w;
  };
  const metric = async (name: string): Promise<number> => {
    const r = await httpRequest(master.url, {
      path: '/metrics',
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    const line = r.body.split('\n').find((l) => l.startsWith(`${name} `));
    return Number(line?.split(' ')[1]);
  };

  test('a runner announcing more than 4 KiB of data is refused, naming the field and the limit', async () => {
    const w = await client('/runner');
    const reply = await w.emitWithAck('runner:hello', {
      runnerId: 'fat-data',
      slots: 1,
      workers: 1,
      data: { blob: 'x'.repeat(MAX_RUNNER_DATA_BYTES) },
    });
    expect(reply).toMatchObject({ ok: false, error: { code: 'EVALIDATION' } });
    expect(JSON.stringify(reply)).toMatch(/data: must be at most 4096 bytes as JSON/);
  });

  test('5 feeders that stop reading while 100 system messages of 200 KB go to everyone: each is closed once 2 MiB waits for it (the most held for one connection under 3 MiB), the log says so, a reading feeder gets all 100, peak RSS under 250 MB', async () => {
    const slow = await Promise.all(Array.from({ length: 5 }, () => client('/feeder')));
    const reader = await client('/feeder');
    for (const s of slow) s.stopReading();
    const sender = await client('/feeder');
    const msg = 'm'.repeat(200 * 1024);
    const send = (from: number, n: number) =>
      Promise.all(
        Array.from({ length: n }, (_, k) =>
          sender.emitWithAck('sysmsg:send', { msg: { i: from + k, msg } }, 60_000),
        ),
      );
    // A first burst fills the stopped feeders' socket buffers (the master's send buffer grows to
    // tcp_wmem's largest, theirs stays at tcp_rmem's default: they stopped reading at once) and their
    // 2 MiB, so each is closed by the limit at once, well before the 10 s heartbeat could close it; the
    // rest goes 1 MB at a time, so the reading feeder, slowed by a busy machine, is never far behind.
    const first = burstFor(LIMIT, msg.length);
    const replies = await send(0, first);
    for (let i = first; i < 100; i += 5) replies.push(...(await send(i, Math.min(5, 100 - i))));
    // Every message was acknowledged by those that read; the slow ones count as missed, not waited for.
    for (const r of replies) expect(r).toMatchObject({ ok: true });
    await reader.until(
      () => reader.events.filter(([n]) => n === 'sysmsg').length === 100,
      'the reading feeder to get all 100 system messages',
    );
    expect(await metric('taskmaster_slow_readers_disconnected')).toBe(5);
    const peak = await metric('taskmaster_socket_buffered_bytes_peak');
    expect(peak).toBeGreaterThan(LIMIT);
    expect(peak).toBeLessThan(LIMIT + MESSAGE);
    expect(master.output()).toMatch(/slow reader disconnected: it stopped reading what the master sends/);
    expect(master.memory().peakMb).toBeLessThan(250);
    await assertMasterAlive(master.url, TOKEN);
  });

  test('5 dashboards that stop reading while ticks carry 300 runners of 4 KB data each: each is closed once 2 MiB waits for it, a reading dashboard keeps its ticks, peak RSS under 250 MB', async () => {
    for (let i = 0; i < 300; i += 50)
      await Promise.all(
        Array.from({ length: 50 }, async (_, j) => {
          const r = await client('/runner');
          await r.emitWithAck('runner:hello', {
            runnerId: `data-${i + j}`,
            slots: 1,
            workers: 1,
            data: { note: 'd'.repeat(MAX_RUNNER_DATA_BYTES - 100) },
          });
        }),
      );
    const slow = await Promise.all(Array.from({ length: 5 }, () => client('/dashboard')));
    for (const s of slow) s.stopReading();
    const dashboard = await client('/dashboard');
    const before = await metric('taskmaster_slow_readers_disconnected');
    // A master in another process tells only through its metrics: asked until it holds (bounded).
    await eventually(async () => (await metric('taskmaster_slow_readers_disconnected')) === before + 5, {
      what: 'the 5 paused dashboards to be disconnected',
    });
    const ticks = dashboard.events.filter(([n]) => n === 'dash:tick').length;
    await dashboard.until(
      () => dashboard.events.filter(([n]) => n === 'dash:tick').length > ticks,
      'the reading dashboard to get another tick',
    );
    const [, last] = dashboard.events.filter(([n]) => n === 'dash:tick').at(-1) as [
      string,
      { runners: unknown[] },
    ];
    expect(last.runners.length).toBeGreaterThanOrEqual(300);
    expect(await metric('taskmaster_socket_buffered_bytes_peak')).toBeLessThan(LIMIT + MESSAGE);
    expect(master.memory().peakMb).toBeLessThan(250);
    await assertMasterAlive(master.url, TOKEN);
  });
});

import mongoose from 'mongoose';
import type { Feeder } from '../../feeder/feeder';
import type { TaskOutcome } from '../../protocol/schemas';
import type { Runner } from '../../runner/runner';
import { freePort, spawnCli, type Proc } from '../helpers/cluster';
import { eventually, WAIT_MS, within } from '../helpers/wait';
import { testDbName, testDbUrl } from '../helpers/db';
import { startFeeder, startRunner } from '../helpers/clients';

describe('the master killed with SIGKILL mid-batch and restarted', () => {
  const dbName = testDbName('masterkill');
  let port: number;
  let url: string;
  const masters: Proc[] = [];
  let runner: Runner;
  let feeder: Feeder;
  let conn: mongoose.Connection;

  const startMasterProcess = async () => {
    const p = spawnCli(['master', '--port', String(port), '--mongo-url', testDbUrl(dbName)]);
    masters.push(p);
    await p.waitFor(/master listening/);
    return p;
  };

  beforeAll(async () => {
    port = await freePort();
    url = `http://127.0.0.1:${port}`;
    conn = await mongoose.createConnection(testDbUrl(dbName)).asPromise();
  });
  afterAll(async () => {
    await feeder?.close();
    await runner?.close();
    for (const m of masters) await m.kill('SIGKILL');
    await conn?.close();
  });

  test('every acknowledged task completes and its result is in MongoDB', async () => {
    const first = await startMasterProcess();
    runner = await startRunner(url, { workers: 2, slots: 4 });
    feeder = await startFeeder(url);
    const n = 60;
    const outcomes = new Map<string, TaskOutcome>();
    let resolveSome!: () => void;
    const some = new Promise<void>((r) => (resolveSome = r));
    const all = new Promise<void>((resolve) =>
      feeder.on('result', (o: TaskOutcome) => {
        outcomes.set(o.id, o);
        if (outcomes.size >= 5) resolveSome();
        if (outcomes.size === n) resolve();
      }),
    );
    const refs = await feeder.add(
      Array.from({ length: n }, (_, i) => ({
        id: `t${i}`,
        module: 'timed',
        params: [50, i],
        priority: i % 3,
        dependencies: i >= 50 ? [`t${i - 50}`] : [],
      })),
    );
    expect(refs).toHaveLength(n);
    await within(WAIT_MS, some, () => `outcomes of 5 tasks (got ${outcomes.size})`);
    await first.kill('SIGKILL');
    expect(outcomes.size).toBeLessThan(n); // really mid-batch
    await startMasterProcess();
    await within(WAIT_MS, all, () => `outcomes of all ${n} tasks (got ${outcomes.size})`);

    for (const r of refs) expect(outcomes.get(r.id)).toMatchObject({ state: 'done' });
    for (const r of refs)
      expect((outcomes.get(r.id)!.result as { label: number }).label).toBe(Number(r.id.slice(1)));
    // Every outcome is in its `tasks` document.
    const tasks = conn.collection<{ _id: string }>('tasks');
    await eventually(async () => (await tasks.countDocuments({ state: 'done' })) === n, 20_000);
    const doc = await tasks.findOne({ _id: 't7' });
    expect(doc).toMatchObject({ state: 'done', result: { label: 7 }, attempts: expect.any(Number) });
    expect((doc as { assigned?: { completed?: number } }).assigned?.completed).toEqual(expect.any(Number));
  });

  test('on SIGTERM the master stops, flushes every write and exits 0; nothing acknowledged is lost', async () => {
    for (const m of masters) await m.kill('SIGKILL'); // the port is this test's now
    const graceful = await startMasterProcess();
    const f = await startFeeder(url);
    try {
      const refs = await f.add(
        Array.from({ length: 300 }, (_, i) => ({ id: `sigterm-${i}`, module: 'timed', params: [0, i] })),
      );
      expect(await graceful.kill('SIGTERM')).toBe(0);
      expect(graceful.output()).toContain('SIGTERM');
      const stored = await conn
        .collection<{ _id: string }>('tasks')
        .countDocuments({ _id: { $in: refs.map((r) => r.id) } });
      expect(stored).toBe(refs.length);
    } finally {
      await f.close();
    }
  });
});

/**
 * Reads that scan: on FerretDB only `_id` look-ups use an index, so a task list with a text filter
 * or a batch that memory does not follow reads every stored task. A read-only client looping over
 * such reads must not take the database from the writes that make adds durable. How long an add's
 * acknowledgement takes meanwhile is bench:scans' to measure; here, the bound: at most `maxScans`
 * (2) scans at once, the others refused with EBUSY, and adds still acknowledged and run.
 */
import mongoose from 'mongoose';
import type { Runner } from '../../runner/runner';
import { startFeeder, startRunner, type TestFeeder } from '../helpers/clients';
import { spawnMaster, type MasterProcess } from '../helpers/cluster';
import { testDbName, testDbUrl } from '../helpers/db';
import { assertMasterAlive, httpRequest } from './cluster';

const STORED = 10_000;

describe('adversarial: reads that scan', () => {
  const dbName = testDbName(__filename);
  let master: MasterProcess;
  let runner: Runner;
  let feeder: TestFeeder;

  beforeAll(async () => {
    // Finished tasks as the master stores them: what every scan has to read through.
    const conn = await mongoose.createConnection(testDbUrl(dbName)).asPromise();
    const now = Date.now();
    for (let i = 0; i < STORED; i += 1000)
      await conn.collection('tasks').insertMany(
        Array.from({ length: 1000 }, (_, k) => ({
          _id: `old-${i + k}` as never,
          batch: `old-${(i + k) % 4}`,
          module: 'ok',
          params: [i + k],
          state: 'done',
          attempts: 1,
          maxAttempts: 3,
          created: now,
          updated: now,
          rev: 3,
          assigned: { who: 'r', when: now, completed: now },
          result: [i + k],
        })),
      );
    await conn.close();
    // Its start reads the stored batches (for the dashboard and the names): scans, slow on a busy machine.
    master = await spawnMaster(dbName, [], { startTimeoutMs: 180_000 });
    runner = await startRunner(master.url, { workers: 2, slots: 8, runnerId: 'scans' });
    feeder = await startFeeder(master.url);
  }, 300_000);
  afterAll(async () => {
    await feeder?.close();
    await runner?.close();
    await master?.kill('SIGKILL');
  });

  test('8 readers looping over unknown batches and text filters: at most 2 scans at once, the others 503 EBUSY naming the limit; 50 adds acknowledged meanwhile and run; master peak RSS under 300 MB', async () => {
    let stop = false;
    const answers = new Map<string, number>();
    const messages = new Set<string>();
    const reader = async (r: number) => {
      for (let i = 0; !stop && i < 2000; i++) {
        const path = i % 2 === 0 ? `/api/tasks?q=nothing-${r}-${i}` : `/api/batches/unknown-${r}-${i}`;
        // A scan of 10,000 stored tasks waits its turn at the gate and for the database: on a loaded
        // machine that takes more than the usual 10 s (a master that hangs still fails the bound).
        const res = await httpRequest(master.url, { path, timeoutMs: 60_000 });
        const code = res.status === 200 ? '200' : `${res.status} ${res.json().error?.code ?? ''}`;
        answers.set(code, (answers.get(code) ?? 0) + 1);
        if (res.status === 503) messages.add(res.json().error?.message ?? '');
      }
    };
    const readers = Array.from({ length: 8 }, (_, r) => reader(r));
    // Adds one after the other while the readers loop: each is acknowledged, each runs.
    const ids: string[] = [];
    for (let i = 0; i < 50; i++)
      ids.push(...(await feeder.add([{ id: `scan-add-${i}`, module: 'ok', params: [i] }])).map((t) => t.id));
    stop = true;
    await Promise.all(readers);
    const outcomes = await feeder.wait(ids);
    expect(outcomes.filter((o) => o.state !== 'done')).toEqual([]);

    // Scans did run (an unknown batch is a 404 after its scan; a list a 200), and the ones beyond
    // the limit were refused at once, saying why.
    expect((answers.get('200') ?? 0) + (answers.get('404 ENOTFOUND') ?? 0)).toBeGreaterThan(0);
    expect(answers.get('503 EBUSY') ?? 0).toBeGreaterThan(0);
    expect([...answers.keys()].filter((k) => !['200', '404 ENOTFOUND', '503 EBUSY'].includes(k))).toEqual([]);
    expect([...messages][0]).toMatch(
      /reads that scan the tasks are running already, the most at once \(maxScans 2\)/,
    );
    expect(master.memory().peakMb).toBeLessThan(300);
    await assertMasterAlive(master.url);
  }, 240_000);

  test('a batch never added is answered 404 from memory, even while 2 scans take the gate; a stored one is found', async () => {
    let probed = 0;
    const unknown: number[] = [];
    for (let round = 0; round < 10 && probed < 3; round++) {
      const scans = [0, 1].map((k) => httpRequest(master.url, { path: `/api/tasks?q=busy-${round}-${k}` }));
      const probe = await httpRequest(master.url, { path: `/api/tasks?q=probe-${round}` });
      if (probe.status === 503) {
        probed++;
        // The gate is full: a name never added must not need it.
        unknown.push((await httpRequest(master.url, { path: `/api/batches/never-added-${round}` })).status);
        const list = await httpRequest(master.url, { path: `/api/tasks?batch=never-added-${round}` });
        expect({ status: list.status, tasks: list.json().tasks }).toEqual({ status: 200, tasks: [] });
      }
      await Promise.all(scans);
    }
    expect(probed).toBeGreaterThan(0);
    expect(unknown.every((status) => status === 404)).toBe(true);
    const stored = await httpRequest(master.url, { path: '/api/batches/old-1' });
    expect(stored.status).toBe(200);
    expect(stored.json()).toMatchObject({ batch: { id: 'old-1' } });
  }, 120_000);
});

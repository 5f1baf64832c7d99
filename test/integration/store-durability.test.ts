import fs from 'node:fs';
import path from 'node:path';
import mongoose from 'mongoose';
import type { Feeder } from '../../feeder/feeder';
import type { Master } from '../../master/master';
import type { TaskOutcome } from '../../protocol/schemas';
import type { Runner } from '../../runner/runner';
import { startMaster, tempDir } from '../helpers/cluster';
import { startFeeder, startRunner } from '../helpers/clients';
import { ownDatabase, type OwnDatabase } from '../helpers/own-db';
import { waitForEvent, within, WAIT_MS } from '../helpers/wait';

/**
 * The database under a running master: frozen, killed and restarted. Each test has a server of its
 * own, so stopping it disturbs nothing else.
 */
describe('the database fails under a running master', () => {
  let db: OwnDatabase;
  const cleanup: (() => Promise<unknown> | unknown)[] = [];

  beforeEach(async () => {
    db = await ownDatabase();
  });
  afterEach(async () => {
    try {
      db.signal('SIGCONT');
    } catch {
      // not running
    }
    for (const c of cleanup.splice(0).reverse()) await c();
    await db.stop();
  });

  async function cluster(label: string): Promise<{ master: Master; runner: Runner; feeder: Feeder }> {
    const master = await startMaster(label, { mongoUrl: db.url(label) });
    cleanup.push(() => master.close());
    const runner = await startRunner(master.url, { workers: 2, slots: 8 });
    cleanup.push(() => runner.close());
    const feeder = await startFeeder(master.url);
    cleanup.push(() => feeder.close());
    return { master, runner, feeder };
  }

  test('an add is not acknowledged while the database is frozen (SIGSTOP), and is once it runs again', async () => {
    const { feeder } = await cluster('sigstop');
    expect(await feeder.work([{ module: 'ok', params: ['before'] }])).toMatchObject([{ state: 'done' }]);
    const done = waitForEvent<[TaskOutcome]>(feeder, 'result', (o) => o.id === 'frozen', {
      what: 'the outcome of task "frozen"',
    }).then(([o]) => o);
    db.signal('SIGSTOP');
    let acked = false;
    const add = feeder.add([{ id: 'frozen', module: 'ok', params: ['during'] }]).then((r) => {
      acked = true;
      return r;
    });
    // Nothing can tell "not yet" from "never" but time: a second is far beyond an add's usual ~ms.
    await new Promise((r) => setTimeout(r, 1000));
    expect(acked).toBe(false);
    db.signal('SIGCONT');
    expect(await add).toEqual([expect.objectContaining({ id: 'frozen' })]);
    expect(await done).toMatchObject({ id: 'frozen', state: 'done', result: ['during'] });
  });

  test('SIGKILL of the database mid-batch, restarted on the same files: every acknowledged task completes once and work resumes', async () => {
    const { master, feeder } = await cluster('dbkill');
    const runs = path.join(tempDir('runs'), 'runs.txt');
    const n = 300;
    const outcomes = new Map<string, TaskOutcome>();
    let duplicates = 0;
    let onOutcome: () => void = () => undefined;
    feeder.on('result', (o: TaskOutcome) => {
      if (outcomes.has(o.id)) duplicates++;
      outcomes.set(o.id, o);
      onOutcome();
    });
    const until = (count: number) =>
      within(
        WAIT_MS,
        new Promise<void>((resolve) => {
          onOutcome = () => outcomes.size >= count && resolve();
          onOutcome();
        }),
        () => `${count} outcomes (got ${outcomes.size})`,
      );
    const refs = await feeder.add(
      Array.from({ length: n }, (_, i) => ({ id: `k${i}`, module: 'record', params: [runs, `k${i}`, 20] })),
    );
    expect(refs).toHaveLength(n);
    await until(40);
    db.signal('SIGKILL');
    const killedAt = outcomes.size;
    // Started again a few seconds later, on the same files and port.
    await new Promise((r) => setTimeout(r, 2000));
    await db.restart();
    const back = Date.now();
    await until(n);
    expect(killedAt).toBeLessThan(n); // the kill really was mid-batch
    expect(duplicates).toBe(0);
    for (const r of refs)
      expect(outcomes.get(r.id)).toMatchObject({ state: 'done', result: { label: r.id } });
    const lines = fs.readFileSync(runs, 'utf8').trim().split('\n');
    expect(lines).toHaveLength(n); // each ran exactly once
    expect(new Set(lines).size).toBe(n);
    // Work resumed within seconds of the database coming back (the writer's backoff is capped at 5 s).
    expect(Date.now() - back).toBeLessThan(30_000);
    // And `tasks` caught up with every outcome.
    await master.flushed();
    const conn = await mongoose.createConnection(db.url(master.opts.dbName as string)).asPromise();
    try {
      expect(await conn.collection('tasks').countDocuments({ state: 'done' })).toBe(n);
      expect(await conn.collection('task_journal').countDocuments({})).toBe(0);
    } finally {
      await conn.close();
    }
  });
});

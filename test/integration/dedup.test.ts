/**
 * Deduplication (`dedup: { key, ttl? }`) against a real master, runners and database: while a task
 * holds a key, adds of the key create nothing and name that task (`deduplicated`), from any number of
 * feeders at once; `work` gives the holder's outcome; the key is free again once the task is final
 * and its ttl has passed, and not a moment before.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Connection } from 'mongoose';
import type { TaskRef } from '../../protocol/schemas';
import { startFeeder, type TestFeeder } from '../helpers/clients';
import { spawnCli, tempDir } from '../helpers/cluster';
import { connectTestDb } from '../helpers/db';
import { eventually, waitForEvent, within, WAIT_MS } from '../helpers/wait';
import { useCluster } from '../helpers/use-cluster';

const FEEDERS = 100;

describe('deduplication', () => {
  const c = useCluster({ runners: [{ runnerId: 'dedup-r', workers: 2, slots: 4 }], feeder: true });
  let dir: string;
  let db: Connection;
  beforeAll(async () => {
    dir = tempDir('dedup');
    db = await connectTestDb(c.dbName);
  });
  afterAll(async () => {
    await db?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const stored = (key: string) => db.collection('tasks').countDocuments({ 'dedup.key': key });

  test(`${FEEDERS} feeders adding one key at once, and one add of many, create one task; every reply names it`, async () => {
    const gate = path.join(dir, 'gate-concurrent');
    const runs = path.join(dir, 'runs-concurrent');
    const key = 'report:2026-12-07';
    const feeders: TestFeeder[] = [];
    try {
      for (let i = 0; i < FEEDERS; i++) feeders.push(await startFeeder(c.url));
      const task = (i: number) => ({ module: 'gate', params: [runs, `f${i}`, gate], dedup: { key } });
      // Every feeder's add in flight together, and one add of 50 tasks with the key beside them.
      const [many, ...single] = await Promise.all([
        c.feeder.add(Array.from({ length: 50 }, (_, i) => task(1000 + i))),
        ...feeders.map((f, i) => f.add([task(i)])),
      ]);
      const refs: TaskRef[] = [...single.map((r) => r[0]), ...many];
      const ids = new Set(refs.map((r) => r.id));
      expect(ids.size).toBe(1);
      const [id] = ids;
      // Exactly one add created it; each of the others was told it was deduplicated, to it.
      expect(refs.filter((r) => !r.deduplicated)).toHaveLength(1);
      expect(refs.filter((r) => r.deduplicated)).toHaveLength(FEEDERS + 50 - 1);
      expect(c.master.scheduler.dedupHolder(key)).toBe(id);
      // In `tasks` once the master has written what it holds (a new task waits in the journal first).
      await c.master.flushed();
      expect(await stored(key)).toBe(1);

      // Every deduplicated item's `work` resolves with the one task's outcome.
      const outcomes = Promise.all(feeders.map((f) => f.wait([id])));
      fs.writeFileSync(gate, '');
      for (const [o] of await outcomes) expect(o).toMatchObject({ id, state: 'done' });
      expect(fs.readFileSync(runs, 'utf8').trim().split('\n')).toHaveLength(1);
      expect(await stored(key)).toBe(1);
    } finally {
      await Promise.all(feeders.map((f) => f.close()));
    }
  });

  test("work of a deduplicated item resolves with the existing task's outcome, not its own", async () => {
    const gate = path.join(dir, 'gate-work');
    const runs = path.join(dir, 'runs-work');
    const other = await startFeeder(c.url);
    try {
      const started = waitForEvent(c.runner, 'started');
      const first = c.feeder.work([{ module: 'gate', params: [runs, 'first', gate], dedup: { key: 'w' } }]);
      await started;
      const add = jest.spyOn(other, 'add');
      const second = other.work([{ module: 'gate', params: [runs, 'second', gate], dedup: { key: 'w' } }]);
      // The add inside `work` is answered (deduplicated) while the first task still runs.
      const [ref] = await (add.mock.results[0].value as Promise<TaskRef[]>);
      expect(ref.deduplicated).toEqual({
        state: expect.stringMatching(/^(assigned|running)$/),
        batch: expect.any(String),
      });
      fs.writeFileSync(gate, '');
      const [[a], [b]] = await Promise.all([first, second]);
      expect(b).toEqual(a);
      expect(a).toMatchObject({ state: 'done', result: { label: 'first' } });
      expect(fs.readFileSync(runs, 'utf8')).toBe('first\n');
    } finally {
      await other.close();
    }
  });

  test('within one add, a second task with the key is deduplicated to the first; a dependency on it names the first', async () => {
    const refs = await c.feeder.add([
      { id: 'batch-a', module: 'ok', params: ['a'], dedup: { key: 'in-batch' } },
      { id: 'batch-b', module: 'ok', params: ['b'], dedup: { key: 'in-batch' } },
      { id: 'batch-c', module: 'ok', params: ['c'], dependencies: ['batch-b'] },
    ]);
    expect(refs[0]).toEqual({ id: 'batch-a', _id: 'batch-a' });
    expect(refs[1]).toMatchObject({ id: 'batch-a', deduplicated: { batch: expect.any(String) } });
    expect(refs[2]).toEqual({ id: 'batch-c', _id: 'batch-c' });
    const [c3] = await c.feeder.wait(['batch-c']);
    expect(c3.state).toBe('done');
    const doc = await eventually(() => db.collection('tasks').findOne({ _id: 'batch-c' as never }));
    expect(doc.dependencies).toEqual(['batch-a']);
    expect(await db.collection('tasks').countDocuments({ _id: 'batch-b' as never })).toBe(0);
  });

  test('once the task is final the key (without a ttl) is free: the next add creates a new task, and the index drops it', async () => {
    const [done] = await c.feeder.work([{ module: 'ok', params: [1], dedup: { key: 'free-at-once' } }]);
    expect(done.state).toBe('done');
    expect(c.master.scheduler.dedupHolder('free-at-once')).toBeUndefined();
    const [again] = await c.feeder.add([{ module: 'ok', params: [2], dedup: { key: 'free-at-once' } }]);
    expect(again.deduplicated).toBeUndefined();
    expect(again.id).not.toBe(done.id);
    await c.feeder.wait([again.id]);
    await eventually(async () => (await stored('free-at-once')) === 2, {
      what: 'two tasks stored with the key',
    });
  });

  test('with a ttl still running the key stays taken after the task is final; once it has passed the key is free', async () => {
    const ttl = 3000;
    const key = 'with-ttl';
    const since = Date.now();
    const [done] = await c.feeder.work([{ module: 'ok', params: ['first'], dedup: { key, ttl } }]);
    expect(done.state).toBe('done');
    // Final, and inside its ttl: deduplicated, and `work` gets the first task's outcome.
    const other = await startFeeder(c.url);
    try {
      const [o] = await other.work([{ module: 'ok', params: ['second'], dedup: { key, ttl } }]);
      expect(o).toMatchObject({ id: done.id, result: ['first'] });
    } finally {
      await other.close();
    }
    // The key leaves the index when its ttl ends (never before: its timer, not a look-up, drops it),
    // and the next add creates a task.
    const held = c.master.scheduler.dedupKeys;
    await eventually(() => c.master.scheduler.dedupKeys === held - 1, ttl + WAIT_MS);
    expect(Date.now() - since).toBeGreaterThanOrEqual(ttl);
    expect(c.master.scheduler.dedupHolder(key)).toBeUndefined();
    const [fresh] = await c.feeder.add([{ module: 'ok', params: ['fourth'], dedup: { key } }]);
    expect(fresh.deduplicated).toBeUndefined();
    expect(fresh.id).not.toBe(done.id);
    await c.feeder.wait([fresh.id]);
  });

  test('keys with "$" and dots are stored and matched as they are; a key too long is refused naming the field', async () => {
    const key = '$set.a.b$';
    const [first] = await c.feeder.add([{ module: 'ok', dedup: { key, ttl: 60_000 } }]);
    await c.feeder.wait([first.id]);
    const [second] = await c.feeder.add([{ module: 'ok', dedup: { key } }]);
    expect(second).toMatchObject({ id: first.id, deduplicated: { state: 'done' } });
    const doc = await eventually(() => db.collection('tasks').findOne({ _id: first.id as never }));
    expect(doc.dedup).toMatchObject({ key, until: expect.any(Number) });

    await expect(
      c.feeder.add([
        { module: 'ok', dedup: { key: 'fine' } },
        { module: 'ok', dedup: { key: 'k'.repeat(501) } },
      ]),
    ).rejects.toMatchObject({
      code: 'EVALIDATION',
      message: expect.stringContaining('tasks[1].dedup.key: must be at most 500 characters'),
    });
    // Refused whole: the valid task's key was not taken.
    expect(c.master.scheduler.dedupHolder('fine')).toBeUndefined();
    await expect(c.feeder.add([{ module: 'ok', dedup: { key: 'x', ttl: -1 } }])).rejects.toMatchObject({
      message: expect.stringContaining('tasks[0].dedup.ttl'),
    });
  });

  test('taskmaster feed prints "deduplicated → <id>" for a task whose key is taken', async () => {
    const gate = path.join(dir, 'gate-cli');
    const runs = path.join(dir, 'runs-cli');
    const [holder] = await c.feeder.add([
      { module: 'gate', params: [runs, 'holder', gate], dedup: { key: 'cli' } },
    ]);
    const file = path.join(dir, 'batch.json');
    fs.writeFileSync(
      file,
      JSON.stringify([
        { id: 'own', module: 'ok', params: [1] },
        { id: 'dup', module: 'gate', params: [runs, 'dup', gate], dedup: { key: 'cli' } },
      ]),
    );
    const fed = spawnCli(['feed', file, '--master', c.url]);
    expect(await fed.exit()).toBe(0);
    expect(fed.output()).toContain('stored 1 task in batch');
    expect(fed.output()).toContain('; 1 deduplicated');
    expect(fed.output()).toContain(`tasks[1]\tdeduplicated → ${holder.id}`);

    const waited = spawnCli(['feed', file, '--master', c.url, '--wait']);
    await waited.waitFor(/deduplicated → /);
    fs.writeFileSync(gate, '');
    expect(await within(WAIT_MS, waited.exit(), 'feed --wait to exit')).toBe(0);
    expect(waited.output()).toContain(`tasks[1]\tdeduplicated → ${holder.id}`);
    expect(fs.readFileSync(runs, 'utf8')).toBe('holder\n');
  });

  test('purging a final task inside its ttl frees its key, as a restart would find it', async () => {
    const key = 'purged';
    const [done] = await c.feeder.work([{ module: 'ok', dedup: { key, ttl: 600_000 } }], {
      batch: 'to-purge',
    });
    expect(c.master.scheduler.dedupHolder(key)).toBe(done.id);
    await eventually(async () => (await stored(key)) === 1, { what: 'the task in the tasks collection' });
    expect(await c.master.purge({ batch: 'to-purge' })).toBe(1);
    expect(c.master.scheduler.dedupHolder(key)).toBeUndefined();
    const [fresh] = await c.feeder.add([{ module: 'ok', dedup: { key } }]);
    expect(fresh.deduplicated).toBeUndefined();
    await c.feeder.wait([fresh.id]);
  });

  test('the master is alive after all of it: an add without a key round-trips', async () => {
    const [o] = await c.feeder.work([{ module: 'ok', params: ['alive'] }]);
    expect(o).toMatchObject({ state: 'done', result: ['alive'] });
  });
});

/**
 * Dedup keys survive a master crash: the master (a real process) is killed with SIGKILL, and the same
 * keys added after the restart are deduplicated to the tasks added before it — a task still running,
 * a task final inside its ttl (read back from `tasks`), and a task whose add was acknowledged just
 * before the kill (durable in the journal only). A key whose task was final without a ttl is free.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Connection } from 'mongoose';
import type { Runner } from '../../runner/runner';
import { startFeeder, startRunner, type TestFeeder } from '../helpers/clients';
import { freePort, spawnCli, tempDir, type Proc } from '../helpers/cluster';
import { connectTestDb, testDbName, testDbUrl } from '../helpers/db';
import { eventually } from '../helpers/wait';

describe('dedup keys across a master SIGKILL and restart', () => {
  const dbName = testDbName('dedup-restart');
  let dir: string;
  let url: string;
  let port: number;
  let db: Connection;
  const masters: Proc[] = [];
  let runner: Runner | undefined;
  const feeders: TestFeeder[] = [];

  const startMasterProcess = async () => {
    const p = spawnCli(['master', '--port', String(port), '--mongo-url', testDbUrl(dbName)]);
    masters.push(p);
    await p.waitFor(/master listening/);
    return p;
  };
  const feeder = async () => {
    const f = await startFeeder(url);
    feeders.push(f);
    return f;
  };
  const stored = (key: string) => db.collection('tasks').countDocuments({ 'dedup.key': key });

  beforeAll(async () => {
    dir = tempDir('dedup-restart');
    port = await freePort();
    url = `http://127.0.0.1:${port}`;
    db = await connectTestDb(dbName);
  });
  afterAll(async () => {
    for (const f of feeders) await f.close();
    await runner?.close();
    for (const m of masters) await m.kill('SIGKILL');
    await db?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('the same keys added before and after the restart make one task each', async () => {
    const first = await startMasterProcess();
    const gate = path.join(dir, 'gate');
    const runs = path.join(dir, 'runs');
    runner = await startRunner(url, {
      workers: 2,
      slots: 4,
      reconnectDelayMs: 200,
      reconnectDelayMaxMs: 500,
    });
    const before = await feeder();

    const started = new Promise<void>((resolve) => runner?.once('started', () => resolve()));
    const [live] = await before.add([
      { module: 'gate', params: [runs, 'live', gate], dedup: { key: 'live' } },
    ]);
    await started;
    const [kept] = await before.work([
      { module: 'ok', params: ['kept'], dedup: { key: 'ttl', ttl: 120_000 } },
    ]);
    const [freed] = await before.work([{ module: 'ok', params: ['freed'], dedup: { key: 'no-ttl' } }]);
    // Read back from `tasks` as final after the restart (not from the journal).
    await eventually(async () => {
      const docs = await db
        .collection('tasks')
        .find({ _id: { $in: [kept.id, freed.id] as never[] } })
        .toArray();
      return docs.length === 2 && docs.every((d) => d.state === 'done');
    });
    // Acknowledged, then the master dies at once: only the journal holds it.
    const [late] = await before.add([{ module: 'not-on-any-runner', dedup: { key: 'just-before' } }]);
    await first.kill('SIGKILL');

    await startMasterProcess();
    const after = await feeder();
    const refs = await after.add([
      { module: 'gate', params: [runs, 'again', gate], dedup: { key: 'live' } },
      { module: 'ok', params: ['again'], dedup: { key: 'ttl', ttl: 120_000 } },
      { module: 'not-on-any-runner', dedup: { key: 'just-before' } },
      { module: 'ok', params: ['new'], dedup: { key: 'no-ttl' } },
    ]);
    expect(refs.slice(0, 3)).toEqual([
      { id: live.id, _id: live.id, deduplicated: { state: expect.any(String), batch: expect.any(String) } },
      { id: kept.id, _id: kept.id, deduplicated: { state: 'done', batch: expect.any(String) } },
      { id: late.id, _id: late.id, deduplicated: { state: 'ready', batch: expect.any(String) } },
    ]);
    expect(refs[3].deduplicated).toBeUndefined();
    expect(refs[3].id).not.toBe(freed.id);

    // `work` of the deduplicated items gives the outcomes of the tasks added before the restart.
    const outcomes = after.work([
      { module: 'gate', params: [runs, 'again', gate], dedup: { key: 'live' } },
      { module: 'ok', params: ['again'], dedup: { key: 'ttl' } },
    ]);
    fs.writeFileSync(gate, '');
    const [o1, o2] = await outcomes;
    expect(o1).toMatchObject({ id: live.id, state: 'done', result: { label: 'live' } });
    expect(o2).toMatchObject({ id: kept.id, state: 'done', result: ['kept'] });
    expect(fs.readFileSync(runs, 'utf8')).toBe('live\n');
    // A dependency on a task deduplicated to one final before the restart (known only by its key's
    // entry, not among the outcomes in memory) depends on that task, which is done.
    const [, dependent] = await after.add([
      { id: 'uses-kept', module: 'ok', dedup: { key: 'ttl' } },
      { module: 'ok', params: ['dependent'], dependencies: ['uses-kept'] },
    ]);
    const [d] = await after.wait([dependent.id]);
    expect(d).toMatchObject({ state: 'done', result: ['dependent'] });
    await eventually(async () => (await stored('no-ttl')) === 2, { what: 'the freed key stored twice' });
    for (const key of ['live', 'ttl', 'just-before']) expect(await stored(key)).toBe(1);
  });
});

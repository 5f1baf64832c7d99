/**
 * The database fails under a loaded master running as its own process: its disk full, the server
 * frozen, the database dropped. Each test drives the fault hard, then checks the master's memory
 * bound, that it said what is wrong (`/ready` 503 with the cause), that nothing acknowledged was lost
 * or failed, and that the master is alive and useful once the database is back.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import mongoose from 'mongoose';
import type { TaskOutcome } from '../../protocol/schemas';
import { TaskmasterError } from '../../protocol/errors';
import { startFeeder, startRunner, type TestFeeder } from '../helpers/clients';
import { spawnMaster, tempDir, type MasterProcess } from '../helpers/cluster';
import { ownDatabase, type OwnDatabase } from '../helpers/own-db';
import { eventually } from '../helpers/wait';
import { assertMasterAlive, httpRequest } from './cluster';

interface Ready {
  ready: boolean;
  cause?: string;
  error?: string;
}

async function ready(url: string): Promise<{ status: number; body: Ready }> {
  const r = await httpRequest(url, { path: '/ready' });
  return { status: r.status, body: r.json() as unknown as Ready };
}

describe('adversarial: the database fails under a loaded master', () => {
  const cleanup: (() => Promise<unknown> | unknown)[] = [];
  afterEach(async () => {
    for (const c of cleanup.splice(0).reverse()) await c();
  });

  async function cluster(
    db: OwnDatabase,
    label: string,
    extra: string[] = [],
  ): Promise<{ master: MasterProcess; feeder: TestFeeder; outcomes: Map<string, TaskOutcome[]> }> {
    const master = await spawnMaster(label, extra, { mongoUrl: db.url(label) });
    cleanup.push(() => master.kill('SIGKILL'));
    const runner = await startRunner(master.url, { workers: 2, slots: 16, runnerId: `${label}-runner` });
    cleanup.push(() => runner.close());
    const feeder = await startFeeder(master.url, { ackTimeoutMs: 180_000, waitMs: 180_000 });
    cleanup.push(() => feeder.close());
    const outcomes = new Map<string, TaskOutcome[]>();
    feeder.on('result', (o: TaskOutcome) => outcomes.set(o.id, [...(outcomes.get(o.id) ?? []), o]));
    return { master, feeder, outcomes };
  }

  test('disk full: outcomes and adds wait (none fails EPERSIST), /ready is 503 "disk full", and all of it goes through once space is freed; master peak RSS under 300 MB', async () => {
    // A 48 MB file system of its own for the database, filled up with a file of ours.
    const mnt = tempDir('taskmaster-full-');
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=48m', 'tmpfs', mnt]);
    cleanup.push(() => fs.rmSync(mnt, { recursive: true, force: true }));
    cleanup.push(() => execFileSync('umount', ['-l', mnt]));
    const db = await ownDatabase({ dataDir: path.join(mnt, 'db') });
    cleanup.push(() => db.stop());
    // A lease longer than the disk stays full: a master whose renewals fail that long stands by (its
    // adds then answer ESTANDBY), and on a loaded machine the steps below can take more than the
    // default 10 s.
    const { master, feeder, outcomes } = await cluster(db, 'full', ['--lease-ms', '120000']);
    expect(await feeder.work([{ module: 'ok', params: ['before'] }])).toMatchObject([{ state: 'done' }]);

    // Acknowledged before the disk fills; they finish while it is full, so their outcomes must wait.
    const running = Array.from({ length: 200 }, (_, i) => ({
      id: `run-${i}`,
      module: 'slow',
      params: [1500],
    }));
    await feeder.add(running);
    const filler = path.join(mnt, 'filler');
    fillDisk(filler);

    // Adds while it is full: not acknowledged (nor refused, but for EQUEUEFULL), however long.
    const during = Array.from({ length: 50 }, (_, i) =>
      Array.from({ length: 100 }, (_, k) => ({
        id: `full-${i}-${k}`,
        module: 'ok',
        params: ['x'.repeat(200)],
      })),
    );
    const answers: ('acked' | string)[] = [];
    const ackedIds: string[] = [];
    const adds = during.map((batch) =>
      feeder.add(batch, { retries: 0 }).then(
        (refs) => {
          answers.push('acked');
          ackedIds.push(...refs.map((r) => r.id));
        },
        (err: unknown) => answers.push(err instanceof TaskmasterError ? err.code : String(err)),
      ),
    );
    const full = await eventually(
      async () => {
        const r = await ready(master.url);
        return r.status === 503 && r.body.cause === 'disk full' ? r : false;
      },
      { timeout: 30_000, what: '/ready to answer 503 with the cause "disk full"' },
    );
    expect(full.body).toMatchObject({ ready: false, cause: 'disk full' });
    expect(full.body.error).toMatch(/database or disk is full/);
    const health = await httpRequest(master.url, { path: '/health' });
    expect(health.status).toBe(200);
    expect(health.json()).toMatchObject({ store: { trouble: { cause: 'disk full' } } });
    // The slow tasks finished meanwhile: none of their outcomes went out (each waits to be durable).
    await new Promise((r) => setTimeout(r, 2000));
    const epersist = [...outcomes.values()].flat().filter((o) => o.error?.code === 'EPERSIST');
    expect(epersist).toEqual([]);
    expect(answers.filter((a) => a !== 'EQUEUEFULL')).toEqual([]);
    // Still not ready: reads that succeed on a full disk do not count as writes going through.
    expect(await ready(master.url)).toMatchObject({ status: 503, body: { cause: 'disk full' } });

    fs.rmSync(filler);
    await Promise.all(adds);
    const acked = answers.filter((a) => a === 'acked').length;
    expect(answers.filter((a) => a !== 'acked' && a !== 'EQUEUEFULL')).toEqual([]);
    expect(acked).toBeGreaterThan(0);
    // Every acknowledged task runs to done, once.
    const done = await feeder.wait([...running.map((t) => t.id), ...ackedIds]);
    expect(done.filter((o) => o.state !== 'done')).toEqual([]);
    await eventually(async () => (await ready(master.url)).status === 200, {
      timeout: 30_000,
      what: '/ready back to 200 once space is freed',
    });
    const all = [...outcomes.values()];
    expect(all.every((list) => list.length === 1 && list[0].state === 'done')).toBe(true);
    expect(master.memory().peakMb).toBeLessThan(300);
    await assertMasterAlive(master.url);
  }, 180_000);

  test('database frozen (SIGSTOP) under 1,000 adds a second sent without waiting: beyond 20,000 unwritten tasks adds are refused with EQUEUEFULL, /health says why, and after SIGCONT every acknowledged add runs once; master peak RSS under 300 MB', async () => {
    const db = await ownDatabase();
    cleanup.push(() => db.stop());
    cleanup.push(() => {
      try {
        db.signal('SIGCONT');
      } catch {
        // not running
      }
    });
    // A lease longer than the freeze: this is the queue's bound; a shorter one makes the master stand
    // down (test/integration/standby.test.ts).
    const { master, feeder, outcomes } = await cluster(db, 'frozen', ['--lease-ms', '300000']);
    expect(await feeder.work([{ module: 'ok', params: ['before'] }])).toMatchObject([{ state: 'done' }]);
    db.signal('SIGSTOP');
    const frozenAt = Date.now();
    // 100 tasks every 100 ms, none awaited, until refusals have gone on for 2 s (or 40 s passed).
    const acked: string[] = [];
    const refused: string[] = [];
    const other: string[] = [];
    const adds: Promise<unknown>[] = [];
    let firstRefusal = 0;
    let round = 0;
    while (Date.now() - frozenAt < 40_000 && !(firstRefusal > 0 && Date.now() - firstRefusal > 2000)) {
      const batch = Array.from({ length: 100 }, (_, k) => ({
        id: `f-${round}-${k}`,
        module: 'ok',
        params: [k],
      }));
      round++;
      adds.push(
        feeder.add(batch, { retries: 0 }).then(
          (refs) => acked.push(...refs.map((r) => r.id)),
          (err: unknown) => {
            if (err instanceof TaskmasterError && err.code === 'EQUEUEFULL') {
              firstRefusal ||= Date.now();
              refused.push(...batch.map((t) => t.id));
              if (refused.length === 100) other.push(err.message); // the first one's words
            } else other.push(String(err));
          },
        ),
      );
      await new Promise((r) => setTimeout(r, 100));
    }
    // Frozen still: the master answers, and says why it is not ready.
    const health = await httpRequest(master.url, { path: '/health' });
    expect(health.status).toBe(200);
    expect(health.json()).toMatchObject({ store: { trouble: { cause: 'database not answering' } } });
    expect(await ready(master.url)).toMatchObject({ status: 503, body: { ready: false } });
    const peakFrozen = master.memory().peakMb;
    expect(acked).toEqual([]); // nothing is acknowledged before it is durable
    expect(refused.length).toBeGreaterThan(0);
    expect(other[0]).toMatch(
      /^the database is behind \(database not answering\): \d+ tasks wait to be written, limit 20000/,
    );
    expect(other.slice(1)).toEqual([]);
    // Refusals start at the bound: what waits in memory is at most 20,000 tasks and the adds in flight.
    expect(round * 100 - refused.length).toBeLessThanOrEqual(20_000 + 100);

    db.signal('SIGCONT');
    await Promise.all(adds);
    expect(acked.length).toBe(round * 100 - refused.length);
    const done = await feeder.wait(acked);
    expect(done.filter((o) => o.state !== 'done')).toEqual([]);
    expect(acked.filter((id) => outcomes.get(id)?.length !== 1)).toEqual([]);
    // A refused add added nothing.
    expect(refused.filter((id) => outcomes.has(id))).toEqual([]);
    await eventually(async () => (await ready(master.url)).status === 200, {
      timeout: 30_000,
      what: '/ready back to 200 after SIGCONT',
    });
    expect(peakFrozen).toBeLessThan(300);
    expect(master.memory().peakMb).toBeLessThan(300);
    await assertMasterAlive(master.url);
  }, 240_000);

  test('database dropped under a running master: /ready 503 "database dropped" and a log line, memory written back (40 delivered outcomes found again, 60 live tasks run to done once); master peak RSS under 300 MB', async () => {
    const db = await ownDatabase();
    cleanup.push(() => db.stop());
    // Beats far apart: the drop is seen by /ready itself, not by the next beat.
    const { master, feeder, outcomes } = await cluster(db, 'dropped', ['--lease-ms', '60000']);
    const delivered = Array.from({ length: 40 }, (_, i) => ({
      id: `was-done-${i}`,
      module: 'ok',
      params: [i],
    }));
    expect((await feeder.work(delivered)).every((o) => o.state === 'done')).toBe(true);
    // Live when the database goes: 30 running, 30 waiting for them.
    const live = [
      ...Array.from({ length: 30 }, (_, i) => ({ id: `live-${i}`, module: 'slow', params: [3000] })),
      ...Array.from({ length: 30 }, (_, i) => ({
        id: `after-${i}`,
        module: 'ok',
        dependencies: [`live-${i}`],
      })),
    ];
    await feeder.add(live);
    const conn = await mongoose.createConnection(db.url('dropped')).asPromise();
    cleanup.push(() => conn.close());
    await eventually(
      async () => (await conn.collection('tasks').countDocuments({ _id: /^was-done-/ as never })) === 40,
      {
        what: 'the 40 delivered tasks in tasks',
      },
    );
    await conn.dropDatabase();

    const r = await ready(master.url);
    expect(r).toMatchObject({ status: 503, body: { ready: false, cause: 'database dropped' } });
    await master.waitFor(/the database was dropped under this master/);
    await eventually(async () => (await ready(master.url)).status === 200, {
      timeout: 30_000,
      what: '/ready back to 200 once memory is written back',
    });
    await master.waitFor(/wrote back what memory held after the database was dropped/);
    // The outcomes delivered before the drop are found again.
    const found = await Promise.all(
      delivered.map(async (t) => (await httpRequest(master.url, { path: `/api/tasks/${t.id}` })).status),
    );
    expect(found.filter((status) => status !== 200)).toEqual([]);
    // The live ones run to their end, once, and their documents say so.
    const done = await feeder.wait(live.map((t) => t.id));
    expect(done.filter((o) => o.state !== 'done')).toEqual([]);
    expect(live.filter((t) => outcomes.get(t.id)?.length !== 1)).toEqual([]);
    await eventually(
      async () =>
        (await conn
          .collection('tasks')
          .countDocuments({ _id: { $in: live.map((t) => t.id) } as never, state: 'done' })) === 60,
      { what: 'the 60 live tasks done in tasks' },
    );
    expect(await conn.collection('tasks').countDocuments({ _id: /^was-done-/ as never, state: 'done' })).toBe(
      40,
    );
    expect(master.memory().peakMb).toBeLessThan(300);
    await assertMasterAlive(master.url);
  }, 180_000);
});

/** Writes zeros to `file` until its file system has no space left. */
function fillDisk(file: string): void {
  const fd = fs.openSync(file, 'w');
  const block = Buffer.alloc(1024 * 1024);
  try {
    for (;;) fs.writeSync(fd, block);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
  }
  // The last few KB, below a whole block.
  const small = Buffer.alloc(4096);
  try {
    for (;;) fs.writeSync(fd, small);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
  } finally {
    fs.closeSync(fd);
  }
}

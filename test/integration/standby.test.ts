/**
 * A standby master: every master on a database competes for the lease; the holder is active, the
 * others stand by (health, metrics and refusals naming the active one, nothing else) and take over
 * once it is gone. A paused master that lost its lease writes nothing when it wakes, and stands by.
 */
import { once } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import mongoose from 'mongoose';
import { io as connectSocket } from 'socket.io-client';
import { LEASE_ID, type LeaseDoc } from '../../master/lease';
import { Master } from '../../master/master';
import { capturingLogger } from '../helpers/capture';
import { startFeeder, startRunner } from '../helpers/clients';
import { freePort, spawnCli, tempDir, testLogger, type Proc } from '../helpers/cluster';
import { eventually } from '../helpers/wait';
import { ownDatabase } from '../helpers/own-db';
import { testDbName, testDbUrl, testMongoUrl } from '../helpers/db';
import { WireProxy } from '../helpers/wire-proxy';

const getJson = async (url: string) => {
  const res = await fetch(url);
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
};

/** What a namespace answers a client: `connect`, or the refusal's data. */
function refusalOf(url: string, namespace: string): Promise<Record<string, unknown> | 'connected'> {
  const s = connectSocket(new URL(namespace, url).href, {
    transports: ['websocket'],
    reconnection: false,
    forceNew: true,
  });
  return new Promise((resolve) => {
    s.on('connect', () => {
      s.close();
      resolve('connected');
    });
    s.on('connect_error', (err: Error & { data?: Record<string, unknown> }) => {
      s.close();
      resolve(err.data ?? { message: err.message });
    });
  });
}

describe('standby masters', () => {
  const closers: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    for (const c of closers.splice(0).reverse()) await c();
  });
  const master = (dbName: string, opts: Partial<ConstructorParameters<typeof Master>[0]> = {}) => {
    const m = new Master({
      mongoUrl: testMongoUrl(),
      dbName,
      port: 0,
      logger: testLogger(),
      leaseMs: 1000,
      ...opts,
    });
    closers.push(() => m.close());
    return m;
  };

  test('a second master stands by, serving health and metrics, refusing clients with ESTANDBY naming the active one', async () => {
    const dbName = testDbName('second');
    const first = master(dbName);
    await first.start();
    const second = master(dbName);
    await second.start();
    expect(first.leaseStatus()).toMatchObject({ role: 'active', epoch: 1 });
    expect(second.leaseStatus()).toMatchObject({ role: 'standby', epoch: 1, active: first.url });

    expect(await getJson(`${second.url}/health`)).toMatchObject({
      status: 200,
      body: { ok: true, role: 'standby', epoch: 1, active: first.url },
    });
    expect(await getJson(`${first.url}/health`)).toMatchObject({ body: { role: 'active', epoch: 1 } });
    // A load balancer in front of both routes to the active one.
    expect((await fetch(`${second.url}/ready`)).status).toBe(503);
    expect((await fetch(`${first.url}/ready`)).status).toBe(200);
    expect(await getJson(`${second.url}/api/status`)).toMatchObject({
      status: 503,
      body: { error: { code: 'ESTANDBY', details: { active: first.url, epoch: 1 } } },
    });
    const metrics = await (await fetch(`${second.url}/metrics`)).text();
    expect(metrics).toMatch(/^taskmaster_master_active 0$/m);
    expect(metrics).toMatch(/^taskmaster_master_epoch 1$/m);
    expect(await (await fetch(`${first.url}/metrics`)).text()).toMatch(/^taskmaster_master_active 1$/m);
    for (const ns of ['/runner', '/feeder', '/dashboard', '/'])
      expect(await refusalOf(second.url, ns)).toMatchObject({
        code: 'ESTANDBY',
        active: first.url,
        epoch: 1,
      });
    expect(await refusalOf(first.url, '/feeder')).toBe('connected');

    // `taskmaster status` given both shows each one's role, epoch and lease age, and the active's counters.
    const status = spawnCli(['status', '--master', `${second.url},${first.url}`, '--json']);
    expect(await status.exit()).toBe(0);
    const shown = JSON.parse(status.output().trim().split('\n').pop() as string) as {
      masters: { url: string; role: string; epoch: number; ageMs: number }[];
      tasks: number;
    };
    expect(shown.masters).toMatchObject([
      { url: second.url, role: 'standby', epoch: 1, active: first.url },
      { url: first.url, role: 'active', epoch: 1 },
    ]);
    expect(shown.masters[1].ageMs).toBeLessThan(1000);
    expect(shown.tasks).toBe(0);

    // The active one goes on alone: a task added through it runs once.
    const runner = await startRunner(first.url);
    closers.push(() => runner.close());
    const feeder = await startFeeder(first.url);
    closers.push(() => feeder.close());
    expect(await feeder.work([{ module: 'ok', params: ['alone'] }])).toMatchObject([
      { state: 'done', result: ['alone'] },
    ]);
  });

  test('of three masters started at once, exactly one is active, and the others name it', async () => {
    const dbName = testDbName('race');
    const all = [master(dbName), master(dbName), master(dbName)];
    await Promise.all(all.map((m) => m.start()));
    const active = all.filter((m) => m.leaseStatus().role === 'active');
    expect(active).toHaveLength(1);
    for (const m of all.filter((x) => x !== active[0]))
      expect(m.leaseStatus()).toMatchObject({ role: 'standby', epoch: 1, active: active[0].url });
  });

  test('a standby takes over at once from a master that stopped cleanly, and runs what it left', async () => {
    const dbName = testDbName('clean');
    const first = master(dbName, { leaseMs: 5000 });
    await first.start();
    const second = master(dbName, { leaseMs: 5000 });
    await second.start();
    const feeder = await startFeeder(first.url);
    expect(await feeder.add([{ id: 'left', module: 'ok', params: ['after'] }])).toHaveLength(1);
    await feeder.close();
    const active = once(second, 'active');
    const began = Date.now();
    await first.close();
    expect(await active).toEqual([2]);
    // Within a renewal or so: not the lease a silent holder is given.
    expect(Date.now() - began).toBeLessThan(5000);
    expect(second.leaseStatus()).toMatchObject({ role: 'active', epoch: 2 });
    const runner = await startRunner(second.url);
    closers.push(() => runner.close());
    const again = await startFeeder(second.url);
    closers.push(() => again.close());
    expect(await again.outcome('left')).toMatchObject({ id: 'left', state: 'done', result: ['after'] });
  });

  test('a master that stopped renewing on another machine is taken over once its lease ran out, with the next epoch', async () => {
    const dbName = testDbName('silent');
    const conn = await mongoose.createConnection(testDbUrl(dbName)).asPromise();
    closers.push(() => conn.close());
    await conn.collection<LeaseDoc>('leases').insertOne({
      _id: LEASE_ID,
      holder: '1234@elsewhere/abcd',
      epoch: 7,
      url: 'http://10.0.0.9:3232',
      hostname: 'elsewhere',
      pid: 1234,
      since: new Date(),
      beat: 7,
    });
    const { logger, lines } = capturingLogger();
    const next = master(dbName, { leaseMs: 500, logger });
    await next.start();
    expect(next.leaseStatus()).toMatchObject({ role: 'standby', active: 'http://10.0.0.9:3232', epoch: 7 });
    await once(next, 'active');
    expect(lines.find((l) => l.message === 'took over from a master that is gone')).toMatchObject({
      epoch: 8,
      cause: 'its lease ran out',
      previous: { url: 'http://10.0.0.9:3232', hostname: 'elsewhere', pid: 1234 },
    });
    expect(await conn.collection<LeaseDoc>('leases').findOne({ _id: LEASE_ID })).toMatchObject({
      url: next.url,
      pid: process.pid,
      epoch: 8,
    });
  });

  test('the database paused longer than the lease: after it resumes exactly one master is active, and the batch completes, each task once', async () => {
    const db = await ownDatabase();
    closers.push(() => db.stop());
    closers.push(async () => {
      try {
        db.signal('SIGCONT');
      } catch {
        // not running
      }
    });
    const make = () => {
      const m = new Master({ mongoUrl: db.url('paused'), port: 0, logger: testLogger(), leaseMs: 1000 });
      closers.push(() => m.close());
      return m;
    };
    const [a, b] = [make(), make()];
    await a.start();
    await b.start();
    const urls = [a.url, b.url];
    const runs = path.join(tempDir('standby-paused-'), 'runs.txt');
    const runner = await startRunner(urls, { slots: 4 });
    closers.push(() => runner.close());
    const feeder = await startFeeder(urls);
    closers.push(() => feeder.close());
    const tasks = Array.from({ length: 40 }, (_, i) => ({
      id: `p-${i}`,
      module: 'record',
      params: [runs, `p-${i}`, 200],
    }));
    const work = feeder.work(tasks);
    await eventually(() => fs.existsSync(runs) && fs.readFileSync(runs, 'utf8').split('\n').length > 8, {
      what: 'a fifth of the batch started',
    });
    const stoodDown = once(a, 'standby');
    db.signal('SIGSTOP');
    // Past its deadline the active master stands down, though nobody could take over.
    await stoodDown;
    await new Promise((r) => setTimeout(r, 2000)); // paused for 3 × the lease in all
    db.signal('SIGCONT');
    const outcomes = await work;
    expect(outcomes.filter((o) => o.state !== 'done')).toEqual([]);
    expect([a, b].filter((m) => m.leaseStatus().role === 'active')).toHaveLength(1);
    const lines = fs.readFileSync(runs, 'utf8').trim().split('\n');
    expect(new Set(lines).size).toBe(40);
    expect(lines.length).toBe(40);
  });

  describe('master processes', () => {
    const procs: Proc[] = [];
    afterAll(async () => {
      for (const p of procs) await p.kill('SIGKILL');
    });
    const spawnMaster = (mongoUrl: string, port: number, extra: string[] = []) => {
      const p = spawnCli(['master', '--port', String(port), '--mongo-url', mongoUrl, ...extra]);
      procs.push(p);
      return p;
    };

    test('a master killed with SIGKILL is followed at once by the standby on the same machine', async () => {
      const dbName = testDbName('killed');
      const [portA, portB] = [await freePort(), await freePort()];
      const a = spawnMaster(testDbUrl(dbName), portA, ['--lease-ms', '600000']);
      await a.waitFor(/master listening/);
      const b = spawnMaster(testDbUrl(dbName), portB, ['--lease-ms', '600000']);
      await b.waitFor(/standing by/);
      await a.kill('SIGKILL');
      // Its pid is gone: no need to wait out a 10-minute lease.
      await b.waitFor(/"cause":"its process is gone".*took over from a master that is gone/, 30_000);
      await b.waitFor(/master listening/);
    });

    test('SIGKILL of the active master under load: the standby takes over, the batch completes, every task runs once, and the feeder mid-work gets every outcome once', async () => {
      const dbName = testDbName('underload');
      const [portA, portB] = [await freePort(), await freePort()];
      const urls = [`http://127.0.0.1:${portA}`, `http://127.0.0.1:${portB}`];
      const a = spawnMaster(testDbUrl(dbName), portA, ['--lease-ms', '3000']);
      await a.waitFor(/master listening/);
      const b = spawnMaster(testDbUrl(dbName), portB, ['--lease-ms', '3000']);
      await b.waitFor(/standing by/);
      const runs = path.join(tempDir('standby-runs-'), 'runs.txt');
      const runner = await startRunner(urls, { slots: 8 });
      closers.push(() => runner.close());
      const feeder = await startFeeder(urls);
      closers.push(() => feeder.close());
      const seen = new Map<string, number>();
      feeder.on('result', (o) => seen.set(o.id, (seen.get(o.id) ?? 0) + 1));
      const tasks = Array.from({ length: 60 }, (_, i) => ({
        id: `load-${i}`,
        module: 'record',
        params: [runs, `load-${i}`, 100],
      }));
      const work = feeder.work(tasks);
      await eventually(() => fs.existsSync(runs) && fs.readFileSync(runs, 'utf8').split('\n').length > 15, {
        what: 'a quarter of the batch started',
      });
      await a.kill('SIGKILL');
      await b.waitFor(/"cause":"its process is gone".*took over from a master that is gone/, 30_000);
      const outcomes = await work;
      expect(outcomes.filter((o) => o.state !== 'done')).toEqual([]);
      expect(outcomes.map((o) => o.id).sort()).toEqual(tasks.map((t) => t.id).sort());
      // Each ran once: the runner lived, so what it ran across the takeover was adopted, not rerun.
      const lines = fs.readFileSync(runs, 'utf8').trim().split('\n');
      expect(lines.length).toBe(60);
      expect(new Set(lines).size).toBe(60);
      expect([...seen.values()].every((n) => n === 1)).toBe(true);
      expect(seen.size).toBe(60);
    });

    test('a master paused past its lease writes nothing when it wakes, and stands by', async () => {
      const dbName = testDbName('paused');
      const proxy = await WireProxy.start(testMongoUrl());
      closers.push(() => proxy.close());
      const [portA, portB] = [await freePort(), await freePort()];
      const a = spawnMaster(proxy.url(dbName), portA, ['--lease-ms', '1000']);
      await a.waitFor(/master listening/);
      const b = spawnMaster(testDbUrl(dbName), portB, ['--lease-ms', '1000']);
      await b.waitFor(/standing by/);
      // Work in flight on the paused master: a runner holding tasks, a feeder waiting.
      const runner = await startRunner(`http://127.0.0.1:${portA}`);
      closers.push(() => runner.close());
      const feeder = await startFeeder(`http://127.0.0.1:${portA}`);
      closers.push(() => feeder.close());
      // Results that reach it while it is paused, and an add sent meanwhile, wait in its socket buffers.
      const tasks = Array.from({ length: 2 }, (_, i) => ({ module: 'slow', params: [300 + 100 * i] }));
      await feeder.add(tasks);
      expect(proxy.writesSince(0).length).toBeGreaterThan(0); // the proxy does see its writes

      a.child.kill('SIGSTOP');
      const late = feeder.add([{ module: 'ok' }]).catch(() => 'not acknowledged by the paused master');
      await b.waitFor(/took over from a master that is gone/);
      const woke = Date.now();
      a.child.kill('SIGCONT');
      await a.waitFor(/stepping down to standby/);
      await a.waitFor(/another master holds the lease: standing by/);
      const stoodBy = Date.now();
      const health = await getJson(`http://127.0.0.1:${portA}/health`);
      expect(health.body).toMatchObject({ role: 'standby', epoch: 2, active: `http://127.0.0.1:${portB}` });
      // Everything it still had to write (results, requeues, the fold, its lease) stayed unsent.
      expect(proxy.writesSince(woke).filter((w) => w.at <= stoodBy)).toEqual([]);
      // From then on it is a standby like any other: the one write it may make is a bid for the lease,
      // no sooner than --lease-ms after it saw the holder's beat (a busy machine can delay the beat).
      expect(proxy.writesSince(stoodBy).filter((w) => w.collection !== 'leases')).toEqual([]);
      await late;
    });
  });
});

/**
 * One master per database: a second master started on the same database refuses to start, naming
 * the running one, and changes nothing; a master that is gone (stopped, killed, silent on another
 * machine) is followed by the next one; a paused master that lost its lease stops when it wakes.
 */
import os from 'node:os';
import mongoose from 'mongoose';
import { LEASE_ID, type LeaseDoc } from '../../master/lease';
import { Master } from '../../master/master';
import { capturingLogger } from '../helpers/capture';
import { startFeeder, startRunner } from '../helpers/clients';
import { freePort, spawnCli, startMaster, testLogger, type Proc } from '../helpers/cluster';
import { testDbName, testDbUrl, testMongoUrl } from '../helpers/db';

describe('one master per database', () => {
  const closers: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    for (const c of closers.splice(0).reverse()) await c();
  });
  const master = (dbName: string, opts: Partial<ConstructorParameters<typeof Master>[0]> = {}) =>
    new Master({ mongoUrl: testMongoUrl(), dbName, port: 0, logger: testLogger(), leaseMs: 1000, ...opts });

  test('a second master refuses to start naming the running one, and the first goes on alone', async () => {
    const dbName = testDbName('second');
    const first = await startMaster(dbName, { leaseMs: 1000 });
    closers.push(() => first.close());
    const second = master(dbName);
    closers.push(() => second.close());
    await expect(second.start()).rejects.toMatchObject({
      code: 'EMASTERHELD',
      message: expect.stringContaining(`the master at ${first.url} (pid ${process.pid} on ${os.hostname()}`),
    });
    // What went wrong before: a task added through one master never ran, the other failed it.
    const runner = await startRunner(first.url);
    closers.push(() => runner.close());
    const feeder = await startFeeder(first.url);
    closers.push(() => feeder.close());
    expect(await feeder.work([{ module: 'ok', params: ['alone'] }])).toMatchObject([
      { state: 'done', result: ['alone'] },
    ]);
  });

  test('of two masters started at once, exactly one runs', async () => {
    const dbName = testDbName('race');
    const a = master(dbName);
    const b = master(dbName);
    closers.push(
      () => a.close(),
      () => b.close(),
    );
    const settled = await Promise.allSettled([a.start(), b.start()]);
    expect(settled.map((s) => s.status).sort()).toEqual(['fulfilled', 'rejected']);
    expect(settled.find((s) => s.status === 'rejected')).toMatchObject({ reason: { code: 'EMASTERHELD' } });
  });

  test('a master that stopped cleanly is followed at once', async () => {
    const dbName = testDbName('clean');
    const first = master(dbName, { leaseMs: 60_000 });
    await first.start();
    await first.close();
    const second = master(dbName, { leaseMs: 60_000 });
    closers.push(() => second.close());
    const began = Date.now();
    await second.start();
    expect(Date.now() - began).toBeLessThan(30_000); // not the 60 s a silent holder is given
  });

  test('a master that stopped beating on another machine is taken over once its lease has run out', async () => {
    const dbName = testDbName('silent');
    const conn = await mongoose.createConnection(testDbUrl(dbName)).asPromise();
    closers.push(() => conn.close());
    await conn.collection<LeaseDoc>('leases').insertOne({
      _id: LEASE_ID,
      holder: '1234@elsewhere/abcd',
      url: 'http://10.0.0.9:3232',
      hostname: 'elsewhere',
      pid: 1234,
      since: new Date(),
      beat: 7,
    });
    const { logger, lines } = capturingLogger();
    const next = master(dbName, { leaseMs: 500, logger });
    closers.push(() => next.close());
    await next.start();
    const messages = lines.map((l) => l.message);
    expect(messages).toContain('another master holds this database; checking that it is alive');
    expect(
      lines.find((l) => l.message === 'took over the database from a master that is gone'),
    ).toMatchObject({
      previous: { url: 'http://10.0.0.9:3232', hostname: 'elsewhere', pid: 1234 },
    });
    expect(await conn.collection<LeaseDoc>('leases').findOne({ _id: LEASE_ID })).toMatchObject({
      url: next.url,
      pid: process.pid,
    });
  });

  describe('master processes', () => {
    const procs: Proc[] = [];
    afterAll(async () => {
      for (const p of procs) await p.kill('SIGKILL');
    });
    const spawnMaster = async (dbName: string, port: number, extra: string[] = []) => {
      const p = spawnCli(['master', '--port', String(port), '--mongo-url', testDbUrl(dbName), ...extra]);
      procs.push(p);
      return p;
    };

    test('a master killed with SIGKILL is followed at once on the same machine', async () => {
      const dbName = testDbName('killed');
      const port = await freePort();
      const first = await spawnMaster(dbName, port, ['--lease-ms', '600000']);
      await first.waitFor(/master listening/);
      await first.kill('SIGKILL');
      const second = await spawnMaster(dbName, port, ['--lease-ms', '600000']);
      // Its pid is gone: no need to wait out a 10-minute lease.
      await second.waitFor(/took over the database from a master that is gone/, 30_000);
      await second.waitFor(/master listening/);
    });

    test('the CLI names the running master and exits 1; a master paused past its lease stops when it wakes', async () => {
      const dbName = testDbName('paused');
      const [portA, portB] = [await freePort(), await freePort()];
      const a = await spawnMaster(dbName, portA, ['--lease-ms', '1000']);
      await a.waitFor(/master listening/);
      const refused = await spawnMaster(dbName, portB, ['--lease-ms', '1000']);
      expect(await refused.exit()).toBe(1);
      expect(refused.output()).toContain(`the master at http://127.0.0.1:${portA}`);
      expect(refused.output()).toContain('one master per database');

      a.child.kill('SIGSTOP');
      const b = await spawnMaster(dbName, portB, ['--lease-ms', '1000']);
      await b.waitFor(/took over the database from a master that is gone/);
      await b.waitFor(/master listening/);
      a.child.kill('SIGCONT');
      expect(await a.exit()).toBe(1);
      expect(a.output()).toContain('another master took over this database: this one stops');
    });
  });
});

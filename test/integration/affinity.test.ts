import mongoose from 'mongoose';
import type { Master } from '../../master/master';
import { startMaster } from '../helpers/cluster';
import { testDbName, testDbUrl } from '../helpers/db';
import { rawFeeder, rawRunner, type RawRunner } from '../helpers/raw-clients';

/** Sticky allocation of affinity keys to runners (atributo), stored in MongoDB. */
describe('sticky allocation', () => {
  const dbName = testDbName('affinity');
  const open: { close(): unknown }[] = [];
  let master: Master;
  afterAll(async () => {
    for (const o of open) o.close();
    await master?.close();
  });

  const runner = async (id: string) => {
    const r = await rawRunner(master.url, { runnerId: id, slots: 100 });
    open.push(r);
    return r;
  };
  const api = async (path: string, method = 'GET') =>
    (await fetch(`${master.url}${path}`, { method })).json();
  const owner = (rs: RawRunner[], id: string) => rs.find((r) => r.assigned.some((a) => a.id === id));

  test('a key is allocated to one runner and stays there, even after new runners join, and across a master restart', async () => {
    master = await startMaster(dbName);
    const feeder = await rawFeeder(master.url);
    open.push(feeder);
    const a = await runner('alloc-a');
    const b = await runner('alloc-b');
    const keys = ['acct-1', 'acct-2', 'acct-3', 'acct-4', 'acct-5', 'acct-6'];
    await feeder.add(keys.map((k) => ({ id: `${k}-first`, module: 'ok', affinity: k })));
    await a.until(() => a.assigned.length + b.assigned.length === keys.length);
    const first = new Map(keys.map((k) => [k, owner([a, b], `${k}-first`)!.socket]));
    expect(new Set([...first.values()]).size).toBe(2); // the hash spreads keys over both runners

    const c = await runner('alloc-c');
    await feeder.add(keys.map((k) => ({ id: `${k}-second`, module: 'ok', affinity: k })));
    await a.until(() => a.assigned.length + b.assigned.length === keys.length * 2);
    expect(c.assigned).toHaveLength(0);
    for (const k of keys) expect(owner([a, b], `${k}-second`)!.socket).toBe(first.get(k));

    // Allocations are listed per runner, looked up per key, and stored in MongoDB.
    const listed = (await api('/api/allocations?runner=alloc-a')) as { allocations: { key: string }[] };
    const ofA = keys.filter((k) => first.get(k) === a.socket);
    expect(listed.allocations.map((x) => x.key).sort()).toEqual(ofA.sort());
    expect(await api('/api/allocations/acct-1')).toMatchObject({ key: 'acct-1' });
    for (const method of ['GET', 'DELETE'])
      expect(await api('/api/allocations/never-allocated', method)).toMatchObject({
        error: { code: 'ENOALLOCATION' },
      });
    const conn = await mongoose.createConnection(testDbUrl(dbName)).asPromise();
    try {
      expect(await conn.collection('allocations').countDocuments({})).toBe(keys.length);
    } finally {
      await conn.close();
    }

    // A new master on the same database knows them.
    const ownerOf1 = ((await api('/api/allocations/acct-1')) as { runner: string }).runner;
    await master.close();
    master = await startMaster(dbName);
    expect(master.scheduler.allocations.get('acct-1')).toBe(ownerOf1);
  });

  test('a drained runner gets no new allocations but keeps its keys until they are deallocated', async () => {
    const feeder = await rawFeeder(master.url);
    open.push(feeder);
    const x = await runner('alloc-x');
    const y = await runner('alloc-y');
    const z = await runner('alloc-z');
    const xs = master.scheduler.allocationsOf('alloc-a').map((k) => k.key); // keys of a runner that is gone
    master.scheduler.drain('alloc-x');
    const fresh = Array.from({ length: 8 }, (_, i) => `fresh-${i}`);
    await feeder.add(fresh.map((k) => ({ id: `${k}-t`, module: 'ok', affinity: k })));
    await y.until(() => y.assigned.length + z.assigned.length === fresh.length);
    expect(x.assigned).toHaveLength(0);
    // A key held by a runner that is not here waits for it …
    await feeder.add([{ id: 'waits', module: 'ok', affinity: xs[0] }]);
    await feeder.add([{ id: 'probe', module: 'ok' }]); // once the probe is out, 'waits' had its chance
    await y.until(() => [...y.assigned, ...z.assigned].some((t) => t.id === 'probe'));
    expect([...x.assigned, ...y.assigned, ...z.assigned].some((t) => t.id === 'waits')).toBe(false);
    expect(master.scheduler.tasks.get('waits')?.state).toBe('ready');
    // … until it is deallocated: then it is allocated afresh among the available runners.
    expect(await api(`/api/allocations/${xs[0]}`, 'DELETE')).toEqual({ key: xs[0], deallocated: true });
    await y.until(() => [...y.assigned, ...z.assigned].some((t) => t.id === 'waits'));
    expect(['alloc-y', 'alloc-z']).toContain(master.scheduler.allocations.get(xs[0]));
  });

  test('the allocator can be replaced', async () => {
    const m = await startMaster(testDbName('affinity2'), { allocate: (_key, ids) => ids[ids.length - 1] });
    const f = await rawFeeder(m.url);
    const r1 = await rawRunner(m.url, { runnerId: 'r1', slots: 10 });
    const r2 = await rawRunner(m.url, { runnerId: 'r2', slots: 10 });
    try {
      await f.add(['k1', 'k2', 'k3'].map((k) => ({ id: k, module: 'ok', affinity: k })));
      await r2.until(() => r2.assigned.length === 3);
      expect(r1.assigned).toHaveLength(0);
    } finally {
      f.close();
      r1.close();
      r2.close();
      await m.close();
    }
  });
});

import { discoverMaster, masterFromTracker } from '../../common/discovery';
import type { Master } from '../../master/master';
import { FIXTURES, spawnCli, startMaster, type Proc } from '../helpers/cluster';
import { waitForEvent } from '../helpers/wait';
import { testDbName } from '../helpers/db';

/** Discovery on loopback only: announcements go to 127.255.255.255. */
describe('discovery', () => {
  let master: Master;
  const port = 40_000 + Math.floor(Math.random() * 20_000);
  const procs: Proc[] = [];

  beforeAll(async () => {
    master = await startMaster(testDbName('discovery'), {
      announce: { address: '127.255.255.255', port, intervalMs: 200, data: { dc: 'local' } },
    });
  });
  afterAll(async () => {
    for (const p of procs) await p.kill('SIGKILL');
    await master?.close();
  });

  test('a runner started with --discover finds the master from its UDP announcements', async () => {
    expect(await discoverMaster({ port, timeoutMs: 10_000 })).toBe(master.url);
    const up = waitForEvent(master, 'runner:up', (id) => id === 'discovered');
    const p = spawnCli([
      'runner',
      '--discover',
      '--discovery-port',
      String(port),
      '--tasks',
      FIXTURES,
      '--workers',
      '1',
      '--runner-id',
      'discovered',
      '--data',
      '{"zone":"a"}',
    ]);
    procs.push(p);
    await up;
  });

  test('a tracker answers GET /hostsAvailable with its masters and runners; --tracker finds the master', async () => {
    expect(await masterFromTracker(master.url)).toBe(master.url);
    const hosts = (await (await fetch(`${master.url}/hostsAvailable`)).json()) as {
      masters: { url: string; data: unknown }[];
      runners: { id: string; data: unknown }[];
    };
    expect(hosts.masters).toEqual([{ url: master.url, data: { dc: 'local' } }]);
    expect(hosts.runners).toEqual(
      expect.arrayContaining([expect.objectContaining({ id: 'discovered', data: { zone: 'a' } })]),
    );
    const up = waitForEvent(master, 'runner:up', (id) => id === 'tracked');
    const p = spawnCli([
      'runner',
      '--tracker',
      master.url,
      '--tasks',
      FIXTURES,
      '--workers',
      '1',
      '--runner-id',
      'tracked',
    ]);
    procs.push(p);
    await up;
  });

  test('without anything to find, discovery fails with a clear error', async () => {
    await expect(discoverMaster({ port: port + 1, timeoutMs: 300 })).rejects.toThrow(
      /no master announced itself on UDP port/,
    );
  });
});

import { discoverMaster, masterFromTracker } from '../../common/discovery';
import { FIXTURES, spawnCli, type Proc } from '../helpers/cluster';
import { waitForEvent } from '../helpers/wait';
import { testDbName } from '../helpers/db';
import { useCluster } from '../helpers/use-cluster';

/** Discovery on loopback only: announcements go to 127.255.255.255. */
describe('discovery', () => {
  const port = 40_000 + Math.floor(Math.random() * 20_000);
  const procs: Proc[] = [];

  // Declared before the cluster, so the runners are killed before the master closes.
  afterAll(async () => {
    for (const p of procs) await p.kill('SIGKILL');
  });
  const c = useCluster({
    dbName: testDbName('discovery'),
    masterOptions: {
      announce: { address: '127.255.255.255', port, intervalMs: 200, data: { dc: 'local' } },
    },
  });

  test('a runner started with --discover finds the master from its UDP announcements', async () => {
    expect(await discoverMaster({ port, timeoutMs: 10_000 })).toBe(c.url);
    const up = waitForEvent(c.master, 'runner:up', (id) => id === 'discovered');
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
    expect(await masterFromTracker(c.url)).toBe(c.url);
    const hosts = (await (await fetch(`${c.url}/hostsAvailable`)).json()) as {
      masters: { url: string; data: unknown }[];
      runners: { id: string; data: unknown }[];
    };
    expect(hosts.masters).toEqual([{ url: c.url, data: { dc: 'local' } }]);
    expect(hosts.runners).toEqual(
      expect.arrayContaining([expect.objectContaining({ id: 'discovered', data: { zone: 'a' } })]),
    );
    const up = waitForEvent(c.master, 'runner:up', (id) => id === 'tracked');
    const p = spawnCli([
      'runner',
      '--tracker',
      c.url,
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

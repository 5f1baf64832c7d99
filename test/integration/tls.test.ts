/**
 * The master serving HTTPS and WSS itself, with a certificate signed by a CA made for the test
 * (test/helpers/pki.ts): runners and feeders given that CA work over wss; a client without it is
 * refused with ETLS naming the certificate problem; a new certificate (SIGHUP on the CLI, `setTls`
 * in code) is what new connections see.
 */
import fs from 'node:fs';
import path from 'node:path';
import tls from 'node:tls';
import { requestJson } from '../../common/http-request';
import { silentLogger } from '../../common/logger';
import { Feeder } from '../../feeder/feeder';
import { Runner } from '../../runner/runner';
import { spawnCli, testLogger } from '../helpers/cluster';
import { startRunner } from '../helpers/clients';
import { testDbName, testDbUrl } from '../helpers/db';
import { makeTestCa, type Issued, type TestCa } from '../helpers/pki';
import { useCluster } from '../helpers/use-cluster';

const TOKEN = 'tls-test-token-0123456789';

/** The fingerprint of the certificate a new TLS connection to `url` is served. */
function servedFingerprint(url: string, ca: string): Promise<string> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: hostname, port: Number(port), ca }, () => {
      resolve(socket.getPeerCertificate().fingerprint256);
      socket.end();
    });
    socket.once('error', reject);
  });
}

describe('TLS', () => {
  let pki: TestCa;
  let other: TestCa;
  let first: Issued;

  beforeAll(() => {
    pki = makeTestCa();
    other = makeTestCa('Another CA');
    first = pki.issue('first');
  });
  const c = useCluster({
    masterOptions: () => ({ tls: { cert: first.cert, key: first.key }, token: TOKEN }),
  });
  afterAll(() => {
    pki?.remove();
    other?.remove();
  });

  test('a runner and a feeder given the CA complete a round trip over wss; the master says https', async () => {
    expect(c.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    const runner = await startRunner(c.url, { ca: pki.ca, token: TOKEN });
    const feeder = new Feeder({ master: c.url, ca: pki.ca, token: TOKEN, logger: testLogger() });
    try {
      const [outcome] = await feeder.work([{ id: 'over-tls', module: 'ok', params: ['secure'] }]);
      expect(outcome).toMatchObject({ state: 'done', result: ['secure'] });
      const health = await requestJson(new URL('/health', c.url), { ca: pki.ca });
      expect(health).toMatchObject({ status: 200, body: { ok: true } });
    } finally {
      await feeder.close();
      await runner.close();
    }
  });

  test('a client without the CA, or with another, is refused with ETLS naming the certificate problem', async () => {
    for (const ca of [undefined, other.ca]) {
      const feeder = new Feeder({ master: c.url, ca, token: TOKEN, logger: silentLogger() });
      try {
        const err = (await feeder.ready().then(
          () => null,
          (e: unknown) => e,
        )) as { code?: string; message?: string } | null;
        expect(err?.code).toBe('ETLS');
        expect(err?.message).toMatch(
          /the master's TLS certificate is not trusted \((UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT_LOCALLY|SELF_SIGNED_CERT_IN_CHAIN): .+\): give the CA that signed it \(--ca FILE/,
        );
      } finally {
        await feeder.close();
      }
    }
    const runner = new Runner({ master: c.url, token: TOKEN, workers: 1, logger: silentLogger() });
    try {
      await expect(runner.start()).rejects.toMatchObject({ code: 'ETLS' });
    } finally {
      await runner.close();
    }
  });

  test('taskmaster feed and the operator commands take --ca; without it they fail naming the certificate problem', async () => {
    const runner = await startRunner(c.url, { ca: pki.ca, token: TOKEN });
    const batch = path.join(pki.dir, 'batch.json');
    fs.writeFileSync(batch, JSON.stringify([{ id: 'fed', module: 'ok', params: [1] }]));
    try {
      const refused = spawnCli(['feed', batch, '--master', c.url, '--token', TOKEN]);
      expect(await refused.exit()).toBe(1);
      expect(refused.output()).toContain(
        `taskmaster feed: ETLS: cannot connect the feeder to ${c.url}: the master's TLS certificate is not trusted`,
      );
      const fed = spawnCli([
        'feed',
        batch,
        '--wait',
        '--master',
        c.url,
        '--token',
        TOKEN,
        '--ca',
        pki.caFile,
      ]);
      expect(await fed.exit()).toBe(0);
      expect(fed.output()).toContain('fed\tdone\t[1]');
    } finally {
      await runner.close();
    }

    const without = spawnCli(['status', '--master', c.url, '--token', TOKEN]);
    expect(await without.exit()).toBe(1);
    expect(without.output()).toContain("the master's TLS certificate is not trusted");
    const given = spawnCli(['status', '--json', '--master', c.url, '--token', TOKEN, '--ca', pki.caFile]);
    expect(await given.exit()).toBe(0);
    expect(JSON.parse(given.output().trim().split('\n').pop() as string)).toHaveProperty('stats');
  });

  test('setTls serves a new certificate to new connections; a key of another certificate is refused and the old one stays', async () => {
    const second = pki.issue('second');
    expect(await servedFingerprint(c.url, pki.ca)).toBe(first.fingerprint256);
    expect(c.master.setTls({ cert: second.cert, key: second.key })).toMatchObject({
      fingerprint256: second.fingerprint256,
    });
    expect(await servedFingerprint(c.url, pki.ca)).toBe(second.fingerprint256);
    expect(() => c.master.setTls({ cert: first.cert, key: second.key })).toThrow(
      /tls.key: the key does not belong to the certificate/,
    );
    expect(await servedFingerprint(c.url, pki.ca)).toBe(second.fingerprint256);
    c.master.setTls({ cert: first.cert, key: first.key });
  });

  test('taskmaster master --tls-cert/--tls-key reads the files again on SIGHUP; a bad pair is logged and the old one stays', async () => {
    const served = pki.issue('served');
    const next = pki.issue('next');
    const cli = spawnCli([
      'master',
      '--port',
      '0',
      '--mongo-url',
      testDbUrl(testDbName('tls-cli')),
      '--tls-cert',
      served.certFile,
      '--tls-key',
      served.keyFile,
      '--token',
      TOKEN,
    ]);
    try {
      const line = await cli.waitFor(/"message":"master listening"[^\n]*/);
      const url = /"url":"([^"]+)"/.exec(line)?.[1] ?? '';
      expect(url).toMatch(/^https:/);
      expect(await servedFingerprint(url, pki.ca)).toBe(served.fingerprint256);

      fs.copyFileSync(next.certFile, served.certFile);
      fs.copyFileSync(next.keyFile, served.keyFile);
      cli.child.kill('SIGHUP');
      await cli.waitFor(/"message":"TLS certificate reloaded"/);
      expect(await servedFingerprint(url, pki.ca)).toBe(next.fingerprint256);

      fs.writeFileSync(served.keyFile, 'not a key');
      cli.child.kill('SIGHUP');
      await cli.waitFor(
        /"error":"--tls-key [^"]*: not a PEM private key[^\n]*"message":"TLS certificate not reloaded; the previous one stays"/,
      );
      expect(await servedFingerprint(url, pki.ca)).toBe(next.fingerprint256);
    } finally {
      expect(await cli.kill('SIGTERM')).toBe(0);
    }
  });
});

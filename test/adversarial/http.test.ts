/**
 * The HTTP API under malformed and unauthorised requests, on a real master with a token: nothing
 * kills it, every refusal carries a stable code, and it stays useful afterwards.
 */
import { Master } from '../../master/master';
import { testMongoUrl } from '../helpers/db';
import { httpRequest, rawHttp, useAttackedCluster, TOKEN } from './cluster';

const READ_TOKEN = 'adversarial-read-only-token-987654';

describe('adversarial: HTTP', () => {
  const auth = { authorization: `Bearer ${TOKEN}` };

  const c = useAttackedCluster({ token: TOKEN, readToken: READ_TOKEN });

  test('a request line whose URL cannot be parsed is a 400, not a crash, before the token check', async () => {
    for (const line of ['GET //%%/ HTTP/1.1', 'GET http://[::1 HTTP/1.1']) {
      const answer = await rawHttp(c.master.url, `${line}\r\nHost: x\r\nConnection: close\r\n\r\n`);
      expect(answer).toMatch(/^HTTP\/1\.1 400/);
    }
    await c.assertAlive();
  });

  test('malformed percent-encoding in a route parameter is a 400 EVALIDATION, on every route that decodes', async () => {
    for (const [method, path] of [
      ['GET', '/api/allocations/%E0%A4%A'],
      ['POST', '/api/runners/%ZZ/drain'],
      ['DELETE', '/api/allocations/%'],
    ]) {
      const r = await httpRequest(c.master.url, { method, path, headers: auth });
      expect({ method, path, status: r.status, code: r.json().error?.code }).toEqual({
        method,
        path,
        status: 400,
        code: 'EVALIDATION',
      });
    }
    await c.assertAlive();
  });

  test('/health is open; every other route needs the token', async () => {
    expect((await httpRequest(c.master.url, { path: '/health' })).status).toBe(200);
    for (const path of ['/api/status', '/api/runners', '/api/allocations', '/hostsAvailable']) {
      const r = await httpRequest(c.master.url, { path });
      expect({ path, status: r.status, code: r.json().error?.code }).toEqual({
        path,
        status: 401,
        code: 'EAUTH',
      });
    }
    const wrong = await httpRequest(c.master.url, {
      path: '/api/status',
      headers: { authorization: 'Bearer x' },
    });
    expect(wrong.status).toBe(401);
    expect((await httpRequest(c.master.url, { path: '/api/status', headers: auth })).status).toBe(200);
    await c.assertAlive();
  });

  test('the read-only token sees (GET routes) but cannot act (drain, deallocate)', async () => {
    const ro = { authorization: `Bearer ${READ_TOKEN}` };
    const runner = await c.startRunner({ runnerId: 'ro-target' });
    for (const path of ['/api/status', '/api/runners', '/api/allocations', '/hostsAvailable'])
      expect((await httpRequest(c.master.url, { path, headers: ro })).status).toBe(200);
    const drain = await httpRequest(c.master.url, {
      method: 'POST',
      path: '/api/runners/ro-target/drain',
      headers: ro,
    });
    expect(drain.status).toBe(403);
    expect(drain.json().error?.code).toBe('EAUTH');
    expect(c.master.scheduler.runners.get('ro-target')?.draining).toBeFalsy();
    const del = await httpRequest(c.master.url, {
      method: 'DELETE',
      path: '/api/allocations/k',
      headers: ro,
    });
    expect(del.status).toBe(403);
    await runner.close();
    await c.assertAlive();
  });

  test('a browser request from another origin is refused (403 EORIGIN), token or not; /health stays open', async () => {
    const evil = { ...auth, origin: 'http://evil.example' };
    const r = await httpRequest(c.master.url, { path: '/api/status', headers: evil });
    expect(r.status).toBe(403);
    expect(r.json().error?.code).toBe('EORIGIN');
    const own = await httpRequest(c.master.url, {
      path: '/api/status',
      headers: { ...auth, origin: new URL(c.master.url).origin },
    });
    expect(own.status).toBe(200);
    await c.assertAlive();
  });

  test('a Master made in code beyond loopback needs TLS and a token, or insecure, as the CLI does', async () => {
    const open = () => new Master({ mongoUrl: testMongoUrl(), host: '0.0.0.0' });
    expect(open).toThrow(/refusing to listen on 0\.0\.0\.0 without TLS and a token/);
    expect(() => new Master({ mongoUrl: testMongoUrl(), host: '0.0.0.0', token: TOKEN })).toThrow(
      /with a token but without TLS/,
    );
    expect(() => new Master({ mongoUrl: testMongoUrl(), host: '0.0.0.0', insecure: true })).not.toThrow();
    await c.assertAlive();
  });

  test('a token shorter than 16 characters is refused when the master listens beyond loopback', async () => {
    expect(() => new Master({ mongoUrl: testMongoUrl(), host: '0.0.0.0', token: 'short' })).toThrow(
      /at least 16/,
    );
    expect(
      () => new Master({ mongoUrl: testMongoUrl(), host: '0.0.0.0', token: TOKEN, insecure: true }),
    ).not.toThrow();
    // On loopback, a short token is the operator's business.
    expect(() => new Master({ mongoUrl: testMongoUrl(), host: '127.0.0.1', token: 'short' })).not.toThrow();
    await c.assertAlive();
  });
});

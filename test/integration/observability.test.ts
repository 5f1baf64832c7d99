/**
 * Watching a master: /metrics values move as tasks run, /ready, the read-only /dashboard namespace
 * (snapshot, ticks, task events; the read-only token opens it but acts nowhere), and the dashboard's
 * static files (content types, no way out of the folder, a page when it is not built).
 */
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { io as connect, type Socket } from 'socket.io-client';
import { HttpRoutes, type HttpView } from '../../master/http/server';
import { staticRoutes } from '../../master/http/static';
import { tempDir, testLogger } from '../helpers/cluster';
import { waitForEvent } from '../helpers/wait';
import { testDbName } from '../helpers/db';
import { useCluster } from '../helpers/use-cluster';

/** A metric's value in Prometheus text, 0 when absent. */
function metric(text: string, name: string, labels = ''): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels} `) || l === `${name}${labels}`);
  return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : 0;
}

describe('metrics and readiness', () => {
  const c = useCluster({ dbName: testDbName('metrics'), runners: [{ slots: 2 }], feeder: true });

  const scrape = async () => {
    const res = await fetch(new URL('/metrics', c.url));
    expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
    return res.text();
  };

  test('counters, histograms and gauges move as tasks run', async () => {
    const before = await scrape();
    expect(metric(before, 'taskmaster_runners_connected')).toBe(1);
    expect(metric(before, 'taskmaster_slots', '{kind="total"}')).toBe(2);
    for (const name of [
      'nodejs_eventloop_lag_seconds',
      'process_resident_memory_bytes',
      'taskmaster_store_write_backlog',
    ])
      expect(before).toContain(`\n${name} `);
    await c.feeder.work([
      ...Array.from({ length: 4 }, (_, i) => ({ module: 'ok', params: [i] })),
      { module: 'throws', maxAttempts: 2 },
    ]);
    const after = await scrape();
    const ok = '{module="ok"}';
    const throws = '{module="throws"}';
    expect(
      metric(after, 'taskmaster_tasks_added_total', ok) - metric(before, 'taskmaster_tasks_added_total', ok),
    ).toBe(4);
    expect(
      metric(after, 'taskmaster_tasks_done_total', ok) - metric(before, 'taskmaster_tasks_done_total', ok),
    ).toBe(4);
    expect(metric(after, 'taskmaster_tasks_assigned_total', throws)).toBe(2);
    expect(metric(after, 'taskmaster_tasks_retried_total', throws)).toBe(1);
    expect(metric(after, 'taskmaster_tasks_failed_total', throws)).toBe(1);
    expect(metric(after, 'taskmaster_run_seconds_count', ok)).toBe(4);
    expect(metric(after, 'taskmaster_ready_to_assigned_seconds_count', ok)).toBe(4);
    expect(metric(after, 'taskmaster_store_write_seconds_count')).toBeGreaterThan(
      metric(before, 'taskmaster_store_write_seconds_count'),
    );
  });

  test('queue depth by priority counts ready tasks while no runner has a free slot', async () => {
    await c.runner.close();
    await c.feeder.add([
      { module: 'ok', priority: 5 },
      { module: 'ok', priority: 5 },
      { module: 'ok', priority: 1 },
    ]);
    const text = await scrape();
    expect(metric(text, 'taskmaster_queue_depth', '{priority="5"}')).toBe(2);
    expect(metric(text, 'taskmaster_queue_depth', '{priority="1"}')).toBe(1);
    expect(metric(text, 'taskmaster_tasks', '{state="ready"}')).toBe(3);
    await c.startRunner();
  });

  test('/ready answers 200 once recovery finished and the database answers', async () => {
    const res = await fetch(new URL('/ready', c.url));
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ ready: true, database: true, recovered: true });
  });
});

describe('the /dashboard namespace', () => {
  const TOKEN = 'dashboard-test-token-0123456789';
  const READ = 'dashboard-read-token-0123456789';
  const sockets: Socket[] = [];
  // Declared before the cluster, so the sockets close before the master does.
  afterAll(() => {
    for (const s of sockets) s.close();
  });
  // The runner and the feeder carry the master's token.
  const c = useCluster({
    dbName: testDbName('dashboard-nsp'),
    masterOptions: { token: TOKEN, readToken: READ },
    runners: 1,
    feeder: true,
  });

  const open = (token?: string) => {
    const s = connect(`${c.url}/dashboard`, {
      auth: token ? { token } : {},
      transports: ['websocket'],
      reconnection: false,
    });
    sockets.push(s);
    return s;
  };

  test('with the read-only token: a snapshot at once, ticks every second, and task events as tasks change', async () => {
    const s = open(READ);
    const [snap] = await waitForEvent<
      [{ counts: Record<string, number>; runners: unknown[]; batches: unknown[] }]
    >(s as never, 'dash:snapshot');
    expect(snap.runners).toHaveLength(1);
    expect(Object.keys(snap.counts).sort()).toEqual([
      'assigned',
      'cancelled',
      'done',
      'failed',
      'ready',
      'running',
      'waiting',
    ]);
    const taskEvent = waitForEvent(
      s as never,
      'dash:task',
      (t: { id: string; state: string }) => t.id === 'watched' && t.state === 'done',
      5000,
    );
    await c.feeder.work([{ id: 'watched', module: 'ok' }], { batch: 'dash' });
    const [tick] = await waitForEvent<
      [{ counts: Record<string, number>; batches: { id: string }[]; throughput: { done: number }[] }]
    >(s as never, 'dash:tick', (o: { counts: Record<string, number> }) => o.counts.done >= 1, 5000);
    expect(tick.batches.map((b) => b.id)).toContain('dash');
    expect(tick.throughput.reduce((n, p) => n + p.done, 0)).toBeGreaterThanOrEqual(1);
    await taskEvent;
  });

  test('without a token the namespace refuses the connection with EAUTH', async () => {
    const s = open();
    const [err] = await waitForEvent<[Error & { data?: { code?: string } }]>(s as never, 'connect_error');
    expect(err.data?.code).toBe('EAUTH');
  });

  test('the read-only token opens no namespace that acts, and no POST route', async () => {
    const s = connect(`${c.url}/feeder`, {
      auth: { token: READ },
      transports: ['websocket'],
      reconnection: false,
    });
    sockets.push(s);
    const [err] = await waitForEvent<[Error & { data?: { code?: string } }]>(s as never, 'connect_error');
    expect(err.data?.code).toBe('EAUTH');
    const post = await fetch(new URL('/api/tasks/watched/retry', c.url), {
      method: 'POST',
      headers: { authorization: `Bearer ${READ}` },
    });
    expect(post.status).toBe(403);
    const get = await fetch(new URL('/api/tasks/watched', c.url), {
      headers: { authorization: `Bearer ${READ}` },
    });
    expect(get.status).toBe(200);
  });
});

describe('the dashboard files', () => {
  const dir = tempDir('dashboard-dist');
  const outside = tempDir('dashboard-outside');
  let server: http.Server;
  let base: string;
  const view = {} as HttpView;
  beforeAll(async () => {
    fs.mkdirSync(path.join(dir, 'assets'));
    fs.writeFileSync(path.join(dir, 'index.html'), '<!doctype html><title>dash</title>');
    fs.writeFileSync(path.join(dir, 'assets', 'app-1234.js'), 'console.log(1)');
    fs.writeFileSync(path.join(dir, 'assets', 'app-1234.css'), 'body{}');
    fs.writeFileSync(path.join(outside, 'secret.txt'), 'secret');
    fs.symlinkSync(path.join(outside, 'secret.txt'), path.join(dir, 'assets', 'link.txt'));
    const built = staticRoutes(new HttpRoutes(view, testLogger()), dir);
    const missing = staticRoutes(new HttpRoutes(view, testLogger()), path.join(outside, 'no-dist'));
    server = http.createServer((req, res) =>
      req.headers['x-missing'] ? missing.handle(req, res) : built.handle(req, res),
    );
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await new Promise((r) => server.close(r));
    fs.rmSync(dir, { recursive: true, force: true });
    fs.rmSync(outside, { recursive: true, force: true });
  });

  test('/ is index.html and assets carry their content types', async () => {
    const index = await fetch(`${base}/`);
    expect(index.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(await index.text()).toContain('<title>dash</title>');
    const js = await fetch(`${base}/assets/app-1234.js`);
    expect(js.headers.get('content-type')).toMatch(/^application\/javascript|^text\/javascript/);
    expect((await fetch(`${base}/assets/app-1234.css`)).headers.get('content-type')).toMatch(/^text\/css/);
  });

  test('nothing outside the folder is served: dot-dot, encoded dot-dot, symlinks out', async () => {
    for (const p of [
      '/../package.json',
      '/assets/%2e%2e/%2e%2e/package.json',
      '/%2e%2e%2fpackage.json',
      '/assets/link.txt',
      '/assets/nope.js',
    ]) {
      const res = await fetch(`${base}${p}`);
      expect({ p, status: res.status }).toEqual({ p, status: 404 });
      expect(await res.text()).not.toContain('secret');
    }
  });

  test('without a build, / says the dashboard is not built', async () => {
    const res = await fetch(`${base}/`, { headers: { 'x-missing': '1' } });
    expect(res.status).toBe(200);
    expect(await res.text()).toContain('dashboard is not built');
  });
});

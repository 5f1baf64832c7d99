/**
 * The HTTP side of the master: health and a JSON view of the runners. Everything else is 404.
 */
import { timingSafeEqual } from 'node:crypto';
import type http from 'node:http';
import type { Scheduler } from './scheduler';

/** What the HTTP API reads of the master. */
export interface HttpView {
  readonly scheduler: Scheduler;
  readonly token?: string;
  hostsAvailable(): unknown;
  listRunners(): Record<string, unknown>[];
}

export function serveHttp(req: http.IncomingMessage, res: http.ServerResponse, master: HttpView): void {
  // Socket.IO answers its own path before this handler runs.
  const url = new URL(req.url ?? '/', 'http://localhost');
  if (req.method === 'GET' && url.pathname === '/health') {
    return json(res, 200, { ok: true });
  }
  // Everything else needs the token when one is set, as `Authorization: Bearer <token>`.
  if (master.token && !bearerMatches(req.headers.authorization, master.token)) {
    return json(res, 401, {
      error: { code: 'EAUTH', message: 'missing or wrong token (Authorization: Bearer <token>)' },
    });
  }
  const drain = /^\/api\/runners\/([^/]+)\/(drain|undrain)$/.exec(url.pathname);
  if (req.method === 'POST' && drain) {
    const id = decodeURIComponent(drain[1]);
    const ok = drain[2] === 'drain' ? master.scheduler.drain(id) : master.scheduler.undrain(id);
    if (!ok) return json(res, 404, { error: { code: 'EUNKNOWN', message: `no runner "${id}"` } });
    const runner = master.listRunners().find((r) => r.id === id);
    return json(res, 200, { runner });
  }
  if (req.method === 'GET' && url.pathname === '/hostsAvailable') {
    return json(res, 200, master.hostsAvailable());
  }
  if (req.method === 'GET' && url.pathname === '/api/allocations') {
    return json(res, 200, {
      allocations: master.scheduler.allocationsOf(url.searchParams.get('runner') ?? undefined),
    });
  }
  const alloc = /^\/api\/allocations\/(.+)$/.exec(url.pathname);
  if (alloc) {
    const key = decodeURIComponent(alloc[1]);
    if (req.method === 'GET') {
      const runner = master.scheduler.allocations.get(key);
      return runner
        ? json(res, 200, { key, runner })
        : json(res, 404, { error: { code: 'EUNKNOWN', message: `no allocation for "${key}"` } });
    }
    if (req.method === 'DELETE') {
      return master.scheduler.deallocate(key)
        ? json(res, 200, { key, deallocated: true })
        : json(res, 404, { error: { code: 'EUNKNOWN', message: `no allocation for "${key}"` } });
    }
  }
  if (req.method === 'GET' && url.pathname === '/api/runners') {
    return json(res, 200, { runners: master.listRunners() });
  }
  if (req.method === 'GET' && url.pathname === '/api/status') {
    const s = master.scheduler;
    return json(res, 200, { tasks: s.tasks.size, runners: s.runners.size, stats: s.stats });
  }
  json(res, 404, { error: { code: 'ENOTFOUND', message: `no route ${req.method} ${url.pathname}` } });
}

function bearerMatches(header: string | undefined, token: string): boolean {
  const given = header?.startsWith('Bearer ') ? Buffer.from(header.slice(7)) : Buffer.alloc(0);
  const want = Buffer.from(token);
  return given.length === want.length && timingSafeEqual(given, want);
}

function json(res: http.ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

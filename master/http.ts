/**
 * The HTTP side of the master: health and a JSON view of the runners. Everything else is 404.
 */
import type http from 'node:http';
import type { Scheduler } from './scheduler';

/** What the HTTP API reads of the master. */
export interface HttpView {
  readonly scheduler: Scheduler;
  listRunners(): Record<string, unknown>[];
}

export function serveHttp(req: http.IncomingMessage, res: http.ServerResponse, master: HttpView): void {
  // Socket.IO answers its own path before this handler runs.
  const url = new URL(req.url ?? '/', 'http://localhost');
  if (req.method === 'GET' && url.pathname === '/health') {
    return json(res, 200, { ok: true });
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

function json(res: http.ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

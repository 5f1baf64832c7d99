/**
 * The HTTP side of the master: health and a JSON view of the runners. Everything else is 404.
 */
import { timingSafeEqual } from 'node:crypto';
import type http from 'node:http';
import { z } from 'zod';
import { formatIssues } from '../protocol/schemas';
import type { PurgeFilter } from './retention';
import type { Scheduler } from './scheduler';

/** What the HTTP API reads of the master. */
export interface HttpView {
  readonly scheduler: Scheduler;
  readonly token?: string;
  hostsAvailable(): unknown;
  listRunners(): Record<string, unknown>[];
  storeStatus(): unknown;
  purge(filter: PurgeFilter): Promise<number>;
}

const purgeSchema = z
  .object({
    batch: z.string().min(1).max(200).optional(),
    state: z.enum(['done', 'failed', 'cancelled']).optional(),
    before: z.number().int().nonnegative().optional(),
  })
  .strict();

export function serveHttp(req: http.IncomingMessage, res: http.ServerResponse, master: HttpView): void {
  // Socket.IO answers its own path before this handler runs.
  const url = new URL(req.url ?? '/', 'http://localhost');
  if (req.method === 'GET' && url.pathname === '/health') {
    return json(res, 200, { ok: true, store: master.storeStatus() });
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
    return json(res, 200, {
      tasks: s.tasks.size,
      runners: s.runners.size,
      stats: s.stats,
      store: master.storeStatus(),
    });
  }
  if (req.method === 'POST' && url.pathname === '/api/purge') {
    return void readJson(req, 64 * 1024)
      .then(
        async (body) => {
          const parsed = purgeSchema.safeParse(body);
          if (!parsed.success) {
            const issues = formatIssues(parsed.error.issues);
            return json(res, 400, {
              error: {
                code: 'EVALIDATION',
                message: issues.map((i) => `${i.path}: ${i.message}`).join('; '),
                issues,
              },
            });
          }
          const purged = await master.purge(parsed.data);
          json(res, 200, { purged });
        },
        (err: unknown) => json(res, 400, { error: { code: 'EVALIDATION', message: String(err) } }),
      )
      .catch((err: unknown) => json(res, 500, { error: { code: 'EUNKNOWN', message: String(err) } }));
  }
  json(res, 404, { error: { code: 'ENOTFOUND', message: `no route ${req.method} ${url.pathname}` } });
}

/** The request body as JSON, refused beyond `limit` bytes. */
function readJson(req: http.IncomingMessage, limit: number): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > limit) {
        reject(new Error(`body over ${limit} bytes`));
        req.destroy();
      } else parts.push(c);
    });
    req.on('end', () => {
      try {
        const text = Buffer.concat(parts).toString('utf8');
        resolve(text ? (JSON.parse(text) as unknown) : {});
      } catch {
        reject(new Error('body is not JSON'));
      }
    });
    req.on('error', reject);
  });
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

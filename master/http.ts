/**
 * The HTTP side of the master: health, a JSON view of the runners and allocations, and drain.
 *
 * Every request goes through one wrapper: the URL and its percent-encoding are parsed inside it (a
 * malformed one is a 400, never a crash), the handler's exceptions are caught, logged once and
 * answered with 500 EINTERNAL. `/health` is open; a browser Origin other than the master's own (or
 * an allowed one) is refused; with a token set, every other route needs `Authorization: Bearer
 * <token>`, and GET routes also take the read-only token.
 */
import type http from 'node:http';
import { z } from 'zod';
import type { Logger } from '../common/logger';
import { formatIssues } from '../protocol/schemas';
import { bearer, safeEqual } from './auth';
import { errorText } from './handler';
import type { PurgeFilter } from './retention';
import type { Scheduler } from './scheduler';

/** What the HTTP API reads of the master. */
export interface HttpView {
  readonly scheduler: Scheduler;
  readonly token?: string;
  readonly readToken?: string;
  originAllowed(origin: string | undefined): boolean;
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

/** A refusal with its status and stable code, thrown by a route and answered by the wrapper. */
class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export function serveHttp(
  req: http.IncomingMessage,
  res: http.ServerResponse,
  master: HttpView,
  logger: Logger,
): void {
  try {
    route(req, res, master);
  } catch (err) {
    if (err instanceof HttpError)
      return json(res, err.status, { error: { code: err.code, message: err.message } });
    logger.error('HTTP handler failed', { method: req.method, url: req.url, error: errorText(err) });
    json(res, 500, {
      error: { code: 'EINTERNAL', message: 'the master failed to handle the request; see its log' },
    });
  }
}

function route(req: http.IncomingMessage, res: http.ServerResponse, master: HttpView): void {
  // Socket.IO answers its own path before this handler runs.
  const url = parseUrl(req.url);
  if (req.method === 'GET' && url.pathname === '/health') {
    return json(res, 200, { ok: true, store: master.storeStatus() });
  }
  if (!master.originAllowed(req.headers.origin))
    throw new HttpError(
      403,
      'EORIGIN',
      `origin ${req.headers.origin} may not call this master (allowOrigins)`,
    );
  authorize(req, master);

  const drain = /^\/api\/runners\/([^/]+)\/(drain|undrain)$/.exec(url.pathname);
  if (req.method === 'POST' && drain) {
    const id = decode(drain[1]);
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
    const key = decode(alloc[1]);
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
          json(res, 200, { purged: await master.purge(parsed.data) });
        },
        (err: unknown) => json(res, 400, { error: { code: 'EVALIDATION', message: String(err) } }),
      )
      .catch((err: unknown) =>
        json(res, 500, { error: { code: 'EINTERNAL', message: `purge failed: ${String(err)}` } }),
      );
  }
  json(res, 404, { error: { code: 'ENOTFOUND', message: `no route ${req.method} ${url.pathname}` } });
}

/** The full token opens everything; the read-only one GET (and HEAD) routes only. */
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

function authorize(req: http.IncomingMessage, master: HttpView): void {
  if (!master.token) return;
  const given = bearer(req.headers.authorization);
  if (given !== undefined && safeEqual(given, master.token)) return;
  const reading = req.method === 'GET' || req.method === 'HEAD';
  if (given !== undefined && master.readToken && safeEqual(given, master.readToken)) {
    if (reading) return;
    throw new HttpError(403, 'EAUTH', 'the read-only token cannot change anything');
  }
  throw new HttpError(401, 'EAUTH', 'missing or wrong token (Authorization: Bearer <token>)');
}

function parseUrl(raw: string | undefined): URL {
  try {
    return new URL(raw ?? '/', 'http://localhost');
  } catch {
    throw new HttpError(400, 'EVALIDATION', 'malformed request URL');
  }
}

function decode(part: string): string {
  try {
    return decodeURIComponent(part);
  } catch {
    throw new HttpError(400, 'EVALIDATION', `malformed percent-encoding in "${part.slice(0, 100)}"`);
  }
}

function json(res: http.ServerResponse, status: number, body: unknown): void {
  if (res.headersSent) return void res.end();
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

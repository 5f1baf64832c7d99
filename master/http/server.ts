/**
 * The HTTP side of the master: health and readiness, metrics, the JSON API (runners, allocations,
 * tasks, batches, retry, cancel, drain, purge, what a token may do) and the dashboard's static files.
 *
 * Routing is find-my-way's (a radix tree: parameters decoded, no hand-written URL matching). Every
 * request goes through one wrapper: the URL and its percent-encoding are parsed inside it (a
 * malformed one is a 400, never a crash), each route's input is parsed with its zod schema, and
 * the handler's exceptions — thrown or rejected — are caught, logged once and answered with 500
 * EINTERNAL. `/health`, `/ready` and the dashboard's files are open; a browser Origin other than the
 * master's own (or an allowed one) is refused; with a token set, every other route needs
 * `Authorization: Bearer <token>`, and GET routes also take the read-only token.
 */
import type http from 'node:http';
import Router from 'find-my-way';
import { z } from 'zod';
import type { Logger } from '../../common/logger';
import type { ErrorCode } from '../../protocol/errors';
import { issueText } from '../../protocol/issues';
import { bearer, safeEqual } from '../auth';
import { internalError, validate } from '../handler';
import type { PurgeFilter } from '../store/retention';
import type { Scheduler } from '../scheduler/scheduler';
import type { LeaseStatus } from '../lease';

/** What the HTTP API reads of the master. */
export interface HttpView {
  readonly scheduler: Scheduler;
  /** The election as this master sees it (master/lease.ts): a standby serves only `standby` routes. */
  leaseStatus(): LeaseStatus;
  readonly token?: string;
  readonly readToken?: string;
  originAllowed(origin: string | undefined): boolean;
  hostsAvailable(): unknown;
  listRunners(): Record<string, unknown>[];
  storeStatus(): unknown;
  /** Messages on the /runner namespace by direction and event (master/wire-counts.ts). */
  wireCounts(): unknown;
  purge(filter: PurgeFilter): Promise<number>;
  /** Database reachable, writes going through and recovery finished; else why not (`cause`). */
  readiness(): Promise<Readiness>;
  metrics(): Promise<{ contentType: string; body: string }>;
}

/** What `/ready` answers: 200 when `ready`, else 503 with the `cause` (and the failing write's error). */
export interface Readiness {
  ready: boolean;
  database: boolean;
  recovered: boolean;
  /** Why not ready: `disk full`, `database not answering`, `database write failing`, … */
  cause?: string;
  error?: string;
  /** How long the cause has lasted. */
  sinceMs?: number;
}

/** One route's request: decoded path parameters and the query string. */
export interface RouteContext<V extends HttpView = HttpView> {
  req: http.IncomingMessage;
  res: http.ServerResponse;
  params: Record<string, string | undefined>;
  query: URLSearchParams;
  master: V;
}

type Handler<V extends HttpView> = (ctx: RouteContext<V>) => unknown;

export interface RouteOptions {
  /** No origin or token check (health, readiness, the dashboard's own files). */
  open?: boolean;
  /**
   * Served by a standby master too (open routes always are); every other route answers a standby's
   * 503 ESTANDBY naming the active master.
   */
  standby?: boolean;
}

/** A refusal with its status and stable code, thrown by a route and answered by the wrapper. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: ErrorCode,
    message: string,
    readonly details?: unknown,
  ) {
    super(message);
  }
}

/** Routes of one master; `handle` is the one entry point for every request. */
export class HttpRoutes<V extends HttpView> {
  // find-my-way answers "no route" for a parameter over 100 characters, as it arrives: task ids and
  // batch names (200 characters) and affinity keys (500) are longer, and longer still percent-encoded
  // (é is %C3%A9). The route's schema then says what is too long, by name.
  private readonly router = Router({ ignoreTrailingSlash: true, maxParamLength: 8192 });

  constructor(
    private readonly master: V,
    private readonly logger: Logger,
  ) {}

  on(
    method: 'GET' | 'POST' | 'PUT' | 'DELETE',
    path: string,
    handler: Handler<V>,
    opts: RouteOptions = {},
  ): this {
    const open = opts.open === true;
    this.router.on(method, path, () => undefined, { handler, open, standby: open || opts.standby === true });
    return this;
  }

  handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const fail = (err: unknown) => {
      if (err instanceof HttpError)
        return json(res, err.status, {
          error: { code: err.code, message: err.message, ...(err.details ? { details: err.details } : {}) },
        });
      const error = internalError(
        this.logger,
        'the master failed to handle the request; see its log',
        { method: req.method, url: req.url },
        err,
      );
      json(res, 500, { error });
    };
    try {
      const out = this.route(req, res);
      if (out instanceof Promise) out.catch(fail);
    } catch (err) {
      fail(err);
    }
  }

  private route(req: http.IncomingMessage, res: http.ServerResponse): unknown {
    // Socket.IO answers its own path before this handler runs.
    const url = parseUrl(req.url);
    decode(url.pathname);
    const method = req.method === 'HEAD' ? 'GET' : (req.method ?? 'GET');
    const found = this.router.find(method as 'GET', url.pathname);
    const store = found?.store as { handler: Handler<V>; open: boolean; standby: boolean } | undefined;
    if (!store?.open) {
      if (!this.master.originAllowed(req.headers.origin))
        throw new HttpError(
          403,
          'EORIGIN',
          `origin ${req.headers.origin} may not call this master (allowOrigins)`,
        );
      authorize(req, this.master);
    }
    if (!found || !store) throw noRoute(req.method, url.pathname);
    if (!store.standby) {
      const lease = this.master.leaseStatus();
      if (lease.role === 'standby') throw standbyError(lease);
    }
    return store.handler({
      req,
      res,
      params: found.params,
      query: url.searchParams,
      master: this.master,
    });
  }
}

/** A standby's answer to what only the active master serves: 503, naming the active one. */
export function standbyError(lease: LeaseStatus): HttpError {
  const where = lease.active ? `the active master is at ${lease.active}` : 'no master is active right now';
  return new HttpError(503, 'ESTANDBY', `this master is standby; ${where}`, {
    active: lease.active,
    epoch: lease.epoch,
  });
}

export function noRoute(method: string | undefined, path: string): HttpError {
  return new HttpError(404, 'ENOTFOUND', `no route ${method} ${path}`);
}

const purgeSchema = z
  .object({
    batch: z.string().min(1).max(200).optional(),
    state: z.enum(['done', 'failed', 'cancelled']).optional(),
    before: z.number().int().nonnegative().optional(),
  })
  .strict();

/** A route parameter: an id, a key. */
export const idSchema = z.string().min(1).max(1000);

/** The routes every master has: health, readiness, metrics, runners, allocations, status, purge. */
export function baseRoutes<V extends HttpView>(routes: HttpRoutes<V>): HttpRoutes<V> {
  return routes
    .on(
      'GET',
      '/health',
      ({ res, master }) => {
        const { role, epoch, active, ageMs, leaseMs } = master.leaseStatus();
        json(res, 200, {
          ok: true,
          role,
          epoch,
          active,
          lease: { ageMs, leaseMs },
          store: master.storeStatus(),
        });
      },
      { open: true },
    )
    .on(
      'GET',
      '/ready',
      async ({ res, master }) => {
        const r = await master.readiness();
        json(res, r.ready ? 200 : 503, r);
      },
      { open: true },
    )
    .on(
      'GET',
      '/metrics',
      async ({ res, master }) => {
        const m = await master.metrics();
        res.writeHead(200, { 'content-type': m.contentType });
        res.end(m.body);
      },
      { standby: true },
    )
    .on('POST', '/api/runners/:id/drain', ({ res, params, master }) =>
      drain(res, master, param(params.id), true),
    )
    .on('POST', '/api/runners/:id/undrain', ({ res, params, master }) =>
      drain(res, master, param(params.id), false),
    )
    .on('GET', '/hostsAvailable', ({ res, master }) => json(res, 200, master.hostsAvailable()))
    .on('GET', '/api/allocations', ({ res, query, master }) =>
      json(res, 200, { allocations: master.scheduler.allocationsOf(query.get('runner') ?? undefined) }),
    )
    .on('GET', '/api/allocations/*', ({ res, params, master }) => {
      const key = param(params['*']);
      const runner = master.scheduler.allocations.get(key);
      if (!runner) throw new HttpError(404, 'ENOALLOCATION', `no allocation for "${key}"`);
      json(res, 200, { key, runner });
    })
    .on('DELETE', '/api/allocations/*', ({ res, params, master }) => {
      const key = param(params['*']);
      if (!master.scheduler.deallocate(key))
        throw new HttpError(404, 'ENOALLOCATION', `no allocation for "${key}"`);
      json(res, 200, { key, deallocated: true });
    })
    .on('GET', '/api/runners', ({ res, master }) => json(res, 200, { runners: master.listRunners() }))
    .on('GET', '/api/access', ({ req, res, master }) => json(res, 200, { act: mayAct(req, master) }))
    .on('GET', '/api/status', ({ res, master }) => {
      const s = master.scheduler;
      json(res, 200, {
        tasks: s.tasks.size,
        runners: s.runners.size,
        stats: s.stats,
        store: master.storeStatus(),
        wire: master.wireCounts(),
        waitingForModules: s.waitingForModules(),
      });
    })
    .on('POST', '/api/purge', async ({ req, res, master }) => {
      const body = await readJson(req, 64 * 1024);
      json(res, 200, { purged: await master.purge(parse(purgeSchema, body)) });
    });
}

function drain(res: http.ServerResponse, master: HttpView, id: string, on: boolean): void {
  const ok = on ? master.scheduler.drain(id) : master.scheduler.undrain(id);
  if (!ok) throw new HttpError(404, 'ENORUNNER', `no runner "${id}"`);
  json(res, 200, { runner: master.listRunners().find((r) => r.id === id) });
}

/** A validated input, or a 400 EVALIDATION naming each field and what is wrong with it. */
export function parse<T>(schema: z.ZodType<T>, value: unknown): T {
  const r = validate(schema, value);
  if (r.ok) return r.data;
  throw new HttpError(400, 'EVALIDATION', issueText(r.issues), { issues: r.issues });
}

/** A path parameter, validated (find-my-way has decoded it). */
export function param(value: string | undefined): string {
  return parse(idSchema, value);
}

/** The request body as JSON, refused beyond `limit` bytes. */
export function readJson(req: http.IncomingMessage, limit: number): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > limit) {
        reject(new HttpError(400, 'EVALIDATION', `body over ${limit} bytes`));
        req.destroy();
      } else parts.push(c);
    });
    req.on('end', () => {
      try {
        const text = Buffer.concat(parts).toString('utf8');
        resolve(text ? (JSON.parse(text) as unknown) : {});
      } catch {
        reject(new HttpError(400, 'EVALIDATION', 'body is not JSON'));
      }
    });
    req.on('error', reject);
  });
}

/**
 * Whether the request's token opens the routes that act (it passed `authorize` for GET already):
 * `GET /api/access`, which a page asks before it offers buttons that act.
 */
function mayAct(req: http.IncomingMessage, master: HttpView): boolean {
  if (!master.token) return true;
  const given = bearer(req.headers.authorization);
  return given !== undefined && safeEqual(given, master.token);
}

/** The full token opens everything; the read-only one GET (and HEAD) routes only. */
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

/** Refuses malformed percent-encoding before routing (the router would only see no match). */
function decode(path: string): void {
  for (const part of path.split('/')) {
    try {
      decodeURIComponent(part);
    } catch {
      throw new HttpError(400, 'EVALIDATION', `malformed percent-encoding in "${part.slice(0, 100)}"`);
    }
  }
}

export function json(res: http.ServerResponse, status: number, body: unknown): void {
  if (res.headersSent) return void res.end();
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

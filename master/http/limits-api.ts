/**
 * `/api/limits`: the rate limits and concurrency caps in effect, and changing them at run time.
 *
 *   GET    /api/limits            every selector's limit (where it comes from) and each gate's counts
 *   GET    /api/limits/SELECTOR   one selector's
 *   PUT    /api/limits/SELECTOR   { "spec": "20/s, 5 concurrent" }: stored, in effect at once
 *   DELETE /api/limits/SELECTOR   the stored one goes: the `--limit` one, if any, applies again
 *
 * The selector (`module:NAME`, `group:NAME`, `group:*`, percent-encoded as any path) and the body are
 * parsed before anything changes; a refusal names the field (`selector`, `spec`) and what is wrong.
 * A put is in the database before it takes effect or is answered (through the fenced store: a
 * master that lost its lease answers 503 ESTANDBY and changes nothing).
 */
import { z } from 'zod';
import { isFenced } from '../store/fence';
import { parseSelector, parseSpec } from '../scheduler/limit-spec';
import type { LimitEntry } from '../scheduler/limit-rules';
import { HttpError, json, param, parse, readJson, type HttpRoutes, type HttpView } from './server';

export interface LimitsView extends HttpView {
  /** Stores `spec` for `selector` and applies it; the entry in effect after. */
  putLimit(selector: string, spec: string): Promise<LimitEntry>;
  /** Deletes the stored limit of `selector`; whether there was one, and the entry in effect after. */
  deleteLimit(selector: string): Promise<{ deleted: boolean; effective: LimitEntry | null }>;
}

const putSchema = z.object({ spec: z.string().min(1, 'must not be empty').max(200) }).strict();

export function limitsRoutes<V extends LimitsView>(routes: HttpRoutes<V>): HttpRoutes<V> {
  return routes
    .on('GET', '/api/limits', ({ res, master }) =>
      json(res, 200, {
        limits: master.scheduler.limitBook.entries().map(shown),
        gates: master.scheduler.limits.status(),
      }),
    )
    .on('GET', '/api/limits/*', ({ res, params, master }) => {
      const selector = selectorParam(params['*']);
      const entry = master.scheduler.limitBook.get(selector);
      if (!entry) throw new HttpError(404, 'ENOTFOUND', `no limit for "${selector}"`);
      json(res, 200, { limit: shown(entry) });
    })
    .on('PUT', '/api/limits/*', async ({ req, res, params, master }) => {
      const selector = selectorParam(params['*']);
      const { spec } = parse(putSchema, await readJson(req, 16 * 1024));
      const parsed = parseSpec(spec);
      if (!parsed.ok) throw invalid('spec', parsed.message);
      const entry = await fencedWrite(() => master.putLimit(selector, spec.trim()));
      json(res, 200, { limit: shown(entry) });
    })
    .on('DELETE', '/api/limits/*', async ({ res, params, master }) => {
      const selector = selectorParam(params['*']);
      const r = await fencedWrite(() => master.deleteLimit(selector));
      if (!r.deleted) throw new HttpError(404, 'ENOTFOUND', `no stored limit for "${selector}"`);
      json(res, 200, { selector, deleted: true, limit: r.effective ? shown(r.effective) : null });
    });
}

function shown(e: LimitEntry): Record<string, unknown> {
  return {
    selector: e.selector,
    spec: e.spec,
    source: e.source,
    ...(e.replaces !== undefined ? { replaces: e.replaces } : {}),
    ...(e.limit.rate ? { rate: e.limit.rate } : {}),
    ...(e.limit.concurrent !== undefined ? { concurrent: e.limit.concurrent } : {}),
  };
}

function selectorParam(raw: string | undefined): string {
  const text = param(raw);
  const s = parseSelector(text);
  if (!s.ok) throw invalid('selector', s.message);
  return text.trim();
}

function invalid(path: string, message: string): HttpError {
  return new HttpError(400, 'EVALIDATION', `${path}: ${message}`, { issues: [{ path, message }] });
}

/** A write refused by the fence: this master is no longer active. */
async function fencedWrite<T>(write: () => Promise<T>): Promise<T> {
  try {
    return await write();
  } catch (err) {
    if (isFenced(err))
      throw new HttpError(
        503,
        'ESTANDBY',
        'this master lost its lease: nothing was changed; ask the active master',
      );
    throw err;
  }
}

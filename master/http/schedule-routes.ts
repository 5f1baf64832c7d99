/**
 * The schedules API: `GET /api/schedules` (every schedule), `GET`, `PUT` and `DELETE
 * /api/schedules/:id`. `PUT` takes the definition as its body (the id from the path), parsed with
 * the schema feeders use (protocol/schedules.ts); an upsert of the same definition changes nothing.
 */
import { z } from 'zod';
import type { ScheduleDefinition, SchedulePutReply, ScheduleView } from '../../protocol/schedules';
import { scheduleInputSchema, scheduleId } from '../../protocol/schedules';
import type { ErrorCode } from '../../protocol/errors';
import { HttpError, json, parse, readJson, type HttpRoutes, type HttpView } from './server';

export interface ScheduleApiView extends HttpView {
  readonly schedules: {
    put(def: ScheduleDefinition): Promise<SchedulePutReply>;
    remove(id: string): Promise<boolean>;
    list(): ScheduleView[];
    get(id: string): ScheduleView | undefined;
  };
}

const idParam = z.strictObject({ id: scheduleId });

/** The path's schedule id, or a 400 naming `id`. */
function idOf(raw: string | undefined): string {
  return parse(idParam, { id: raw }).id;
}

export function scheduleRoutes<V extends ScheduleApiView>(routes: HttpRoutes<V>): HttpRoutes<V> {
  return routes
    .on('GET', '/api/schedules', ({ res, master }) => json(res, 200, { schedules: master.schedules.list() }))
    .on('GET', '/api/schedules/:id', ({ res, params, master }) => {
      const id = idOf(params.id);
      const schedule = master.schedules.get(id);
      if (!schedule) throw new HttpError(404, 'ENOTFOUND', `no schedule "${id}"`);
      json(res, 200, { schedule });
    })
    .on('PUT', '/api/schedules/:id', async ({ req, res, params, master }) => {
      const id = idOf(params.id);
      const body = await readJson(req, 256 * 1024);
      if (body === null || typeof body !== 'object' || Array.isArray(body))
        throw new HttpError(400, 'EVALIDATION', '(root): the body must be a JSON object');
      const given = (body as { id?: unknown }).id;
      if (given !== undefined && given !== id)
        throw new HttpError(400, 'EVALIDATION', `id: "${String(given)}" is not the id in the path ("${id}")`);
      const r = await master.schedules.put(parse(scheduleInputSchema, { ...body, id }));
      if (!r.ok) {
        const status = r.error.code === 'EVALIDATION' ? 400 : r.error.code === 'ESTANDBY' ? 503 : 500;
        throw new HttpError(status, r.error.code as ErrorCode, r.error.message, r.error.details);
      }
      json(res, r.outcome === 'created' ? 201 : 200, { outcome: r.outcome, schedule: r.schedule });
    })
    .on('DELETE', '/api/schedules/:id', async ({ res, params, master }) => {
      const id = idOf(params.id);
      if (!(await master.schedules.remove(id))) throw new HttpError(404, 'ENOTFOUND', `no schedule "${id}"`);
      json(res, 200, { removed: true });
    });
}

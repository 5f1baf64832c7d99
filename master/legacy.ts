/**
 * The original taskmaster events on the default namespace, so clients written against them keep
 * working: `task:request` → `task:send`, `task:done`; `task:add` → `task:added`.
 * A legacy runner is a runner whose free slots are its outstanding requests; it has no id to come
 * back with, so its attempts are retried as soon as it disconnects.
 */
import type { Namespace, Socket } from 'socket.io';
import { limitLog } from '../common/log-limit';
import type { Logger } from '../common/logger';
import { z } from 'zod';
import { wireError, type ReportedError } from '../protocol/errors';
import {
  legacyAddSchema,
  legacyDonePayloadSchema,
  legacyDoneSchema,
  type LegacyClientToMaster,
  type LegacyMasterToClient,
} from '../protocol/legacy';
import { on, onInternal, parse } from './handler';
import type { Assignment } from '../protocol/schemas';
import { runnerEntry, slotPlan, type RunnerEntry } from './scheduler/runner-registry';
import type { Scheduler } from './scheduler/scheduler';

type LegacySocket = Socket<LegacyClientToMaster, LegacyMasterToClient>;

export function serveLegacy(nsp: Namespace, scheduler: Scheduler, logger: Logger): void {
  nsp.on('connection', (raw) => {
    const socket = raw as unknown as LegacySocket;
    const log = logger.child({ socket: socket.id });
    const runnerId = `legacy-${socket.id}`;
    let entry: RunnerEntry | null = null;
    // Free slots of a legacy runner = its outstanding requests.
    let requests = 0;
    const sync = () => {
      if (entry) scheduler.runners.setSlots(entry, entry.active.size + requests);
    };
    // The original protocol has no acknowledgements: refusals go out as `task:error`.
    const report = (error: ReportedError) => socket.emit('task:error', error);

    const ensureRunner = (): RunnerEntry => {
      if (entry && scheduler.runners.get(runnerId) === entry) return entry;
      const fresh = runnerEntry({
        id: runnerId,
        slots: 0,
        workers: 1,
        data: { legacy: true },
        // It announces no modules: any module is sent to it, unless it reports EMODULE for it.
        // Its only limit is the number of outstanding requests (`slots`), kept in sync below.
        planned: slotPlan(Number.MAX_SAFE_INTEGER, undefined, false),
        legacy: true,
        conn: socket.id,
        link: {
          assign: (tasks) => {
            for (const a of tasks) {
              requests = Math.max(0, requests - 1);
              socket.emit(
                'task:send',
                JSON.stringify({
                  _id: scheduler.tasks.get(a.id)?._id ?? a.id,
                  id: a.id,
                  module: a.module,
                  params: a.params,
                  priority: a.priority,
                  attempt: a.attempt,
                  ...legacyDependencies(a),
                }),
              );
            }
            sync();
          },
          // The original protocol has no way to stop an attempt; its result is refused as stale.
          cancel: () => undefined,
        },
      });
      scheduler.runnerUp(fresh, []);
      entry = fresh;
      return fresh;
    };

    on(socket, log, 'task:request', { schema: z.unknown(), report }, () => {
      ensureRunner();
      requests++;
      sync();
      scheduler.scheduleDistribute();
    });

    on(socket, log, 'task:done', { schema: legacyDonePayloadSchema, report }, async (payload) => {
      let obj: unknown = payload;
      if (typeof payload === 'string') {
        try {
          obj = JSON.parse(payload);
        } catch {
          return report(wireError('EVALIDATION', 'task:done: not valid JSON'));
        }
      }
      const parsed = parse(legacyDoneSchema, obj, 'task', 'task:done payload');
      if (!parsed.ok) return report(parsed.error);
      const d = parsed.data;
      // Only a task sent to this very socket, for the attempt it was sent.
      const mine = entry && scheduler.runners.heldBy(runnerId, socket.id) === entry ? entry : null;
      const t = [...(mine?.active ?? [])]
        .map((id) => scheduler.tasks.get(id))
        .find((x) => x !== undefined && (x._id === d._id || x.id === d._id) && x.who === runnerId);
      if (!t) {
        limitLog(
          log,
          'info',
          `stale:${socket.id}`,
          'legacy result for a task not running on this socket ignored',
          {
            taskId: d._id,
            runnerId,
          },
        );
        return report(wireError('ESTALE', `task:done: task "${d._id}" is not running on this connection`));
      }
      const failed = d.error !== undefined && d.error !== null;
      const error =
        typeof d.error === 'object' && d.error !== null
          ? {
              code: String((d.error as { code?: unknown }).code ?? 'ETASK'),
              message: String((d.error as { message?: unknown }).message ?? safeJson(d.error)),
            }
          : { code: 'ETASK', message: String(d.error) };
      const applied = scheduler.results(runnerId, [
        failed
          ? { id: t.id, attempt: t.attempts, ok: false, error }
          : { id: t.id, attempt: t.attempts, ok: true, result: d.result },
      ]);
      sync(); // the finished attempt no longer holds a slot; only new requests open one
      await applied;
    });

    on(socket, log, 'task:add', { schema: legacyAddSchema, prefix: 'tasks', report }, async (list) => {
      const converted = list.map((p) => ({
        module: p.module,
        priority: p.priority ?? 0,
        // The original schema stored params as an array; a lone value is wrapped, as mongoose did.
        params: p.params === undefined ? [] : Array.isArray(p.params) ? p.params : [p.params],
        dependencies: (p.dependencies ?? []).map((d) => (typeof d === 'string' ? d : d._id)),
      }));
      const reply = await scheduler.add(converted, undefined);
      if (!reply.ok) return report(reply.error);
      const now = Date.now();
      socket.emit(
        'task:added',
        reply.tasks.map((ref, i) => {
          const c = converted[i];
          return {
            _id: ref._id,
            id: ref.id,
            module: c.module,
            params: c.params,
            priority: c.priority,
            dependencies: c.dependencies,
            created: now,
          };
        }),
      );
    });

    onInternal(socket, log, 'disconnect', () => {
      if (entry) scheduler.runnerDown(runnerId, 0);
    });
  });
}

/**
 * The dependencies' results for an original-protocol client: `dependencies` maps ids to results, and
 * `dependenciesLeftOut` names those over `maxDependencyBytes` (or no longer stored).
 */
function legacyDependencies(a: Assignment): Record<string, unknown> {
  if (!a.dependencies) return {};
  const dependencies: Record<string, unknown> = {};
  const leftOut: string[] = [];
  for (const d of a.dependencies)
    if (d.leftOut === undefined)
      Object.defineProperty(dependencies, d.id, { value: d.result, enumerable: true });
    else leftOut.push(d.id);
  return { dependencies, ...(leftOut.length > 0 ? { dependenciesLeftOut: leftOut } : {}) };
}

function safeJson(v: unknown): string {
  try {
    return JSON.stringify(v);
  } catch {
    return String(v);
  }
}

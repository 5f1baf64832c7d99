/**
 * The original taskmaster events on the default namespace, so clients written against them keep
 * working: `task:request` → `task:send`, `task:done`; `task:add` → `task:added`.
 * A legacy runner is a runner whose free slots are its outstanding requests; it has no id to come
 * back with, so its attempts are retried as soon as it disconnects.
 */
import type { Namespace, Socket } from 'socket.io';
import type { Logger } from '../common/logger';
import { wireError } from '../protocol/errors';
import {
  legacyDoneSchema,
  legacyTaskSchema,
  type LegacyClientToMaster,
  type LegacyMasterToClient,
} from '../protocol/legacy';
import { formatIssues } from '../protocol/schemas';
import { slotPlan, type RunnerEntry } from './runner-registry';
import type { Scheduler } from './scheduler';
import { summarize } from './validate';

type LegacySocket = Socket<LegacyClientToMaster, LegacyMasterToClient>;

export function serveLegacy(nsp: Namespace, scheduler: Scheduler, logger: Logger): void {
  nsp.on('connection', (raw) => {
    const socket = raw as unknown as LegacySocket;
    const runnerId = `legacy-${socket.id}`;
    let entry: RunnerEntry | null = null;
    // Free slots of a legacy runner = its outstanding requests.
    let requests = 0;
    const sync = () => {
      if (entry) entry.slots = entry.active.size + requests;
    };

    const ensureRunner = (): RunnerEntry => {
      if (entry && scheduler.runners.get(runnerId) === entry) return entry;
      entry = {
        id: runnerId,
        slots: 0,
        workers: 1,
        data: { legacy: true },
        modules: [],
        active: new Set(),
        // Its only limit is the number of outstanding requests (`slots`), kept in sync below.
        ...slotPlan(Number.MAX_SAFE_INTEGER, undefined, false),
        connected: true,
        legacy: true,
        since: Date.now(),
        lostTimer: null,
        send: (tasks) => {
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
              }),
            );
          }
          sync();
        },
        cancel: () => undefined,
      };
      scheduler.runnerUp(entry, []);
      return entry;
    };

    socket.on('task:request', () => {
      ensureRunner();
      requests++;
      sync();
      scheduler.scheduleDistribute();
    });

    socket.on('task:done', (payload) => {
      void (async () => {
        let obj: unknown = payload;
        if (typeof payload === 'string') {
          try {
            obj = JSON.parse(payload);
          } catch {
            socket.emit('task:error', wireError('EVALIDATION', 'task:done: not valid JSON'));
            return;
          }
        }
        const parsed = legacyDoneSchema.safeParse(obj);
        if (!parsed.success) {
          const issues = formatIssues(parsed.error.issues, 'task');
          socket.emit('task:error', wireError('EVALIDATION', `task:done: ${summarize(issues)}`, { issues }));
          return;
        }
        const d = parsed.data;
        const t =
          scheduler.tasks.get(d._id) ??
          [...(entry?.active ?? [])].map((id) => scheduler.tasks.get(id)).find((x) => x?._id === d._id);
        if (!t) {
          logger.info('legacy result for an unknown or finished task ignored', { taskId: d._id, runnerId });
          return;
        }
        const failed = d.error !== undefined && d.error !== null;
        const error =
          typeof d.error === 'object' && d.error !== null
            ? {
                code: String((d.error as { code?: unknown }).code ?? 'ETASK'),
                message: String((d.error as { message?: unknown }).message ?? JSON.stringify(d.error)),
              }
            : { code: 'ETASK', message: String(d.error) };
        const applied = scheduler.results(runnerId, [
          failed
            ? { id: t.id, attempt: t.attempts, ok: false, error }
            : { id: t.id, attempt: t.attempts, ok: true, result: d.result },
        ]);
        sync(); // the finished attempt no longer holds a slot; only new requests open one
        await applied;
      })();
    });

    socket.on('task:add', (payload) => {
      void (async () => {
        const list = Array.isArray(payload) ? payload : [payload];
        const converted: unknown[] = [];
        const issues: { path: string; message: string }[] = [];
        list.forEach((item, i) => {
          const r = legacyTaskSchema.safeParse(item);
          if (!r.success) {
            issues.push(...formatIssues(r.error.issues, `tasks[${i}]`));
            return;
          }
          const p = r.data;
          converted.push({
            module: p.module,
            priority: p.priority ?? 0,
            // The original schema stored params as an array; a lone value is wrapped, as mongoose did.
            params: p.params === undefined ? [] : Array.isArray(p.params) ? p.params : [p.params],
            dependencies: (p.dependencies ?? []).map((d) => (typeof d === 'string' ? d : d._id)),
          });
        });
        if (issues.length > 0) {
          socket.emit('task:error', wireError('EVALIDATION', summarize(issues), { issues }));
          return;
        }
        const reply = await scheduler.add(converted, undefined);
        if (!reply.ok) {
          socket.emit('task:error', reply.error);
          return;
        }
        const now = Date.now();
        socket.emit(
          'task:added',
          reply.tasks.map((ref, i) => {
            const c = converted[i] as {
              module: string;
              params: unknown[];
              priority: number;
              dependencies: string[];
            };
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
      })();
    });

    socket.on('disconnect', () => {
      if (entry) scheduler.runnerDown(runnerId, 0);
    });
  });
}

/**
 * Admission of an add: everything that can refuse it before memory changes, in this order — size and
 * depth limits (checked before anything else, so a refused batch never reaches the database), the
 * batch's own validation (ids taken, dependencies known: those memory cannot answer for are looked
 * up once, by `_id`, by the caller between `precheck` and `admit`), ids another add took while that
 * lookup was awaited, and the queue limit (EQUEUEFULL, with a hint of when to retry).
 *
 * `onExisting: 'skip'`: a task whose id a task in memory or in the database has is not added; the
 * add answers with the existing task instead (its state and batch; definitions are not compared).
 * Its ids are then looked up too, so that a task of the batch that depends on a skipped id depends
 * on the stored task. Two such adds of one id at once: the first to be admitted adds it, and the
 * other, admitted after it (admission is synchronous), finds it in memory.
 *
 * Deduplicated tasks (master/scheduler/dedup.ts, matched by the caller in the same synchronous
 * stretch) are parsed like the others but not added, and their ids are not checked.
 */
import { wireError, type WireError } from '../../protocol/errors';
import type { ParsedTaskInput, TaskOutcome } from '../../protocol/schemas';
import type { TaskState } from '../../protocol/states';
import type { DedupHit } from './dedup';
import type { RunnerSet } from './policies/affinity';
import type { StoredState } from '../task-store';
import type { TaskRecord } from '../task-record';
import { checkLimits, collectIds, collectRefs, summarize, validateBatch } from '../validate';

export interface AdmissionContext {
  tasks: ReadonlyMap<string, TaskRecord>;
  finals: ReadonlyMap<string, TaskOutcome>;
  runners: RunnerSet;
  /** Waiting and ready tasks now. */
  queuedCount(): number;
  maxTaskBytes?: number;
  queueLimit: number;
  queueLimitBytes: number;
  /** Bytes of the tasks in memory now (`queueLimitBytes` bounds them). */
  heldBytes(): number;
  /** Tasks of adds not durable yet, and why the database is behind if it is known. */
  writeBacklog?: () => { tasks: number; trouble?: string };
  writeBacklogLimit?: number;
}

/** What onExisting decides for a task whose id is taken: refuse the add (the default) or skip the task. */
export type OnExisting = 'error' | 'skip';

/** A task of the batch left out because a task with its id exists. */
export interface ExistingTask {
  /** Its index in the batch as given. */
  index: number;
  id: string;
  state: TaskState;
  batch: string;
}

export type Admission =
  { ok: true; parsed: ParsedTaskInput[]; existing: ExistingTask[] } | { ok: false; error: WireError };

/**
 * The checks that need no database: size and depth limits, then the dependencies to look up (neither
 * in memory nor in the batch). Unless `onExisting` is 'skip', the batch's own ids are not looked up
 * here, so admission does not wait for a read: the store refuses an id a stored task has when it
 * writes the add, by one `_id $in` read of the ids the feeder chose (generated ids are not read),
 * started when the add is queued, beside the write in flight.
 */
export function precheck(
  raw: unknown[],
  c: AdmissionContext,
  onExisting: OnExisting = 'error',
): { error: WireError } | { missing: string[] } {
  const limited = checkLimits(raw, c.maxTaskBytes ?? Number.MAX_SAFE_INTEGER);
  if (limited.length > 0) return { error: wireError('EVALIDATION', summarize(limited), { issues: limited }) };
  // Skipping needs to know which of the batch's own ids are stored before anything is admitted.
  const own = onExisting === 'skip' ? new Set<string>() : new Set(collectIds(raw));
  return {
    missing: collectRefs(raw).filter((id) => !own.has(id) && !c.tasks.has(id) && !c.finals.has(id)),
  };
}

/**
 * Admits an add or refuses it, given the stored states of its missing dependencies. Synchronous, and
 * so must be what the caller does with an admitted add until its tasks are in memory: concurrent adds
 * are then checked against the queue limit one after the other, never all against the same count.
 */
export function admit(
  raw: unknown[],
  stored: Map<string, StoredState>,
  c: AdmissionContext,
  onExisting: OnExisting = 'error',
  deduped: ReadonlyMap<number, DedupHit> | null = null,
): Admission {
  const taken = onExisting === 'skip' ? 'existing' : 'taken';
  const omit = deduped ? standIns(raw, deduped) : undefined;
  const {
    tasks: all,
    issues,
    existing: skipped,
  } = validateBatch(
    raw,
    (id) => (c.tasks.has(id) || c.finals.has(id) || stored.has(id) ? taken : undefined),
    omit,
  );
  if (issues.length > 0) return { ok: false, error: wireError('EVALIDATION', summarize(issues), { issues }) };
  const existing: ExistingTask[] = [];
  for (const index of skipped) {
    const id = all[index].id as string;
    const s = c.tasks.get(id) ?? c.finals.get(id) ?? (stored.get(id) as StoredState);
    existing.push({ index, id, state: s.state, batch: s.batch ?? '' });
  }
  const parsed = skipped.size > 0 || omit ? all.filter((_, i) => !skipped.has(i) && !omit?.has(i)) : all;
  // The lookup of missing dependencies awaited the database: ids may have been taken meanwhile.
  const raced = parsed.find((t) => t.id !== undefined && (c.tasks.has(t.id) || c.finals.has(t.id)));
  if (raced) return { ok: false, error: idTaken(parsed.indexOf(raced), raced.id as string) };

  // Every task in memory counts as at most one queued one: below the limit that way, no need to count.
  const queued = c.tasks.size + parsed.length <= c.queueLimit ? c.tasks.size : c.queuedCount();
  if (queued + parsed.length > c.queueLimit) {
    const retryAfterMs = retryAfterHint(c.runners, c.queueLimit);
    return {
      ok: false,
      error: wireError(
        'EQUEUEFULL',
        `the queue is full: ${queued} tasks waiting, limit ${c.queueLimit}, this batch has ${parsed.length}; retry in ~${retryAfterMs} ms`,
        { queued, limit: c.queueLimit, retryAfterMs },
      ),
    };
  }
  const backlog = c.writeBacklog?.();
  const writeLimit = c.writeBacklogLimit ?? Infinity;
  // Adds wait in memory until they are durable: beyond the limit, the database is not keeping up
  // (slow, frozen, its disk full) and memory would grow without end. One add always goes in alone.
  if (backlog && backlog.tasks > 0 && backlog.tasks + parsed.length > writeLimit) {
    const retryAfterMs = 1000;
    const why = backlog.trouble ? ` (${backlog.trouble})` : '';
    return {
      ok: false,
      error: wireError(
        'EQUEUEFULL',
        `the database is behind${why}: ${backlog.tasks} tasks wait to be written, limit ${writeLimit}, this batch has ${parsed.length}; retry in ~${retryAfterMs} ms`,
        {
          unwritten: backlog.tasks,
          limit: writeLimit,
          retryAfterMs,
          ...(backlog.trouble ? { cause: backlog.trouble } : {}),
        },
      ),
    };
  }
  return { ok: true, parsed, existing };
}

/** Each deduplicated task of an add, with the id of the task it was deduplicated to (if known yet). */
function standIns(raw: unknown[], deduped: ReadonlyMap<number, DedupHit>): Map<number, string | undefined> {
  const out = new Map<number, string | undefined>();
  for (const [i, hit] of deduped) {
    if ('holder' in hit) out.set(i, hit.holder.id);
    else {
      const id = (raw[hit.first] as { id?: unknown }).id;
      out.set(i, typeof id === 'string' ? id : undefined);
    }
  }
  return out;
}

/**
 * The bytes bound of an add: EQUEUEFULL when the tasks held in memory and the `bytes` of the add's
 * tasks (as {@link taskBytes} counts them) would be more than `queueLimitBytes`.
 */
export function bytesRoom(c: AdmissionContext, bytes: number, count: number): WireError | null {
  const held = c.heldBytes();
  if (held + bytes <= c.queueLimitBytes) return null;
  const retryAfterMs = retryAfterHint(c.runners, c.queueLimit);
  return wireError(
    'EQUEUEFULL',
    `the queue is full: ${held} bytes of tasks held, queueLimitBytes (--queue-limit-bytes) ${c.queueLimitBytes}, ` +
      `this batch has ${bytes} bytes in ${count} tasks; retry in ~${retryAfterMs} ms`,
    { heldBytes: held, limitBytes: c.queueLimitBytes, batchBytes: bytes, retryAfterMs },
  );
}

/** What a task in memory counts for `queueLimitBytes`: its params as JSON and a record's worth more. */
export function taskBytes(t: { paramsJson: string }): number {
  return Buffer.byteLength(t.paramsJson) + RECORD_BYTES;
}

/** About what a task record holds besides its params (ids, module, timers, links). */
const RECORD_BYTES = 512;

/** EVALIDATION for the task at `index` of the batch as given, whose id is already taken. */
export function idTaken(index: number, id: string): WireError {
  const issue = { path: `tasks[${index}].id`, message: `id "${id}" is already taken` };
  return wireError('EVALIDATION', summarize([issue]), { issues: [issue] });
}

/** A hint for a refused add: about the time the runners need to free a tenth of the limit, at least 100 ms. */
function retryAfterHint(runners: RunnerSet, queueLimit: number): number {
  let slots = 0;
  for (const r of runners.values()) if (r.connected) slots += r.slots;
  return slots === 0 ? 1000 : Math.min(10_000, Math.max(100, Math.round((queueLimit / 10 / slots) * 100)));
}

/**
 * The scheduler: its core (master/scheduler/core.ts: queue, distribution; transitions.ts) with the entry
 * points — adds, runners' reports and comings and goings, recovery after a start, and an operator's
 * requests (cancel, retry, drain, deallocate, "why does this task not run?").
 *
 * Durability before effect: add replies and runners' result acknowledgements resolve only after the
 * store's barrier, i.e. once the change is in the database.
 */
import { z } from 'zod';
import { newId } from '../../common/ids';
import { limitLog } from '../../common/log-limit';
import { capError, wireError, type ReportedError, type WireError } from '../../protocol/errors';
import type { AttemptRef } from '../../protocol/events';
import {
  MAX_TIMER_MS,
  type AddReply,
  type AttemptResult,
  type ModuleInfo,
  type TaskOutcome,
  type TaskRef,
} from '../../protocol/schemas';
import { isFinal, type TaskState } from '../../protocol/states';
import type { TaskDoc } from '../../models/task';
import {
  admit,
  bytesRoom,
  idTaken,
  precheck,
  type AdmissionContext,
  type ExistingTask,
  type OnExisting,
  taskBytes,
} from './admission';
import { AddsInFlight, replayOf } from './add-key';
import { refOf, type DedupHit } from './dedup';
import { expandBroadcasts } from './policies/broadcast';
import { delayedUntil, describeDelay } from './policies/delayed';
import { announcedVersion, explainMissingModule } from './policies/eligibility';
import { reason, type Reason } from './policies/reason';
import { applyJournal, recordFromDoc } from './policies/recovery';
import type { RunnerEntry } from './runner-registry';
import { depError, holdsAttempt, outcomeOf } from './core';
import { SchedulerTransitions } from './transitions';
import type { AddWriteResult, StoredState } from '../task-store';
import { collectIds } from '../validate';
import { firstDocOf, newTaskRecord, type Dedup, type TaskRecord } from '../task-record';

export type { SchedulerOptions, TaskObserver } from './core';

/**
 * The refs of an add in the order its tasks were given: the added ones, the existing ones skipped,
 * and the deduplicated ones (to a task that holds the key, or to an earlier task of the add).
 */
function refsInOrder(
  added: TaskRecord[],
  existing: ExistingTask[],
  deduped: ReadonlyMap<number, DedupHit> | null = null,
): TaskRef[] {
  const refs: TaskRef[] = added.map((t) => ({ id: t.id, _id: t._id }));
  if (!deduped) {
    // `existing` is in batch order: each goes back to its place among the added ones.
    for (const e of existing)
      refs.splice(e.index, 0, { id: e.id, _id: e.id, existing: { state: e.state, batch: e.batch } });
    return refs;
  }
  const out: TaskRef[] = new Array<TaskRef>(added.length + existing.length + deduped.size);
  for (const e of existing)
    out[e.index] = { id: e.id, _id: e.id, existing: { state: e.state, batch: e.batch } };
  for (const [i, hit] of deduped) if ('holder' in hit) out[i] = hit.holder;
  let next = 0;
  const byId = new Map(added.map((t) => [t.id, t]));
  for (let i = 0; i < out.length; i++) if (!out[i] && !deduped.has(i)) out[i] = refs[next++];
  // An earlier task of the add is never itself deduplicated to a later one: its ref is there now.
  for (const [i, hit] of deduped) {
    if ('holder' in hit) continue;
    const f = out[hit.first];
    const t = byId.get(f.id);
    out[i] = refOf(t ?? { id: f.id, ...(f.existing ?? f.deduplicated ?? { state: 'waiting', batch: '' }) });
  }
  return out;
}

/** How long a task's selectors wait after it reported ERATELIMITED without saying how long. */
export const RATE_LIMITED_DEFAULT_MS = 1000;

/** What a runner reports with ERATELIMITED (runner/child-processor.ts puts it there). */
const rateLimitedDetails = z.object({ retryAfter: z.number().int().min(0).max(MAX_TIMER_MS) });

export class Scheduler extends SchedulerTransitions {
  /** Runner ids an operator drained: they get no new work, across reconnects. */
  private drainedByOperator = new Set<string>();
  /** Runs out the recovery grace (`startRecoveryGrace`). */
  private graceTimer: NodeJS.Timeout | null = null;
  /** Adds with an `addKey` whose write is in flight. */
  private readonly addsInFlight = new AddsInFlight();
  private readonly admission: AdmissionContext = {
    tasks: this.tasks,
    finals: this.finals,
    runners: this.runners,
    queuedCount: () => this.queuedCount(),
    maxTaskBytes: this.opts.maxTaskBytes,
    queueLimit: this.opts.queueLimit,
    queueLimitBytes: this.opts.queueLimitBytes,
    heldBytes: () => this.heldBytes,
    writeBacklog: () => ({ tasks: this.store.unwritten ?? 0, trouble: this.store.trouble?.()?.cause }),
    writeBacklogLimit: this.opts.writeBacklogLimit ?? Infinity,
  };

  // ---- adding ----------------------------------------------------------------------------------

  /**
   * Adds tasks. `addKey`: the add's idempotency token; an add whose tasks all exist, created by an add
   * with this key, is answered as that add was and stores nothing (master/scheduler/add-key.ts).
   */
  add(
    raw: unknown[],
    batchName: string | undefined,
    calledAt?: number,
    onExisting: OnExisting = 'error',
    addKey?: string,
  ): Promise<AddReply> {
    return this.addOnce(raw, batchName, calledAt, onExisting, addKey, false);
  }

  /**
   * `lookUp`: look every id of the add up, memory aside (a keyed add the store refused because a
   * stored task had one of its ids, tried again to tell whether it is a retry).
   */
  private async addOnce(
    raw: unknown[],
    batchName: string | undefined,
    calledAt: number | undefined,
    onExisting: OnExisting,
    addKey: string | undefined,
    lookUp: boolean,
  ): Promise<AddReply> {
    // A try of an add while an earlier try of it is being written: that write's answer decides what
    // this one finds (its tasks stored, or out of memory again). Its ids are then looked up rather
    // than admitted again: if the store refused them as taken, they are in the database.
    if (addKey !== undefined && this.addsInFlight.has(addKey)) {
      await this.addsInFlight.idle(addKey);
      lookUp = true;
    }
    if (this.closed) return { ok: false, error: wireError('EVALIDATION', 'the master is shutting down') };
    const pre = precheck(raw, this.admission, onExisting);
    if ('error' in pre) return { ok: false, error: pre.error };
    // A keyed add's own ids are looked up only when one is known already (in memory, or final): new
    // ids cost no read here, and one only the database holds makes the store refuse the add as taken,
    // which brings it back here with `lookUp`.
    let own: string[] = [];
    if (addKey !== undefined) {
      const ids = collectIds(raw);
      if (lookUp || ids.some((id) => this.tasks.has(id) || this.finals.has(id)))
        own = ids.filter((id) => !this.tasks.has(id));
    }
    const ask = own.length > 0 ? [...new Set([...pre.missing, ...own])] : pre.missing;
    // Only dependencies memory cannot answer for are looked up: an add that needs none runs without
    // a pause until its tasks are in memory (see admit).
    const stored = ask.length > 0 ? await this.store.fetchStates(ask) : new Map<string, StoredState>();
    // From here until its tasks are in memory the add runs without a pause: a dedup key found free
    // here is held by this add before any other add can look at it.
    const now = Date.now();
    const deduped = this.dedup.match(raw, now);
    // A dependency on a deduplicated task names its holder: a final one the outcome cache has let go
    // of is still known, by its key's entry.
    if (deduped)
      for (const hit of deduped.values()) {
        const h = 'holder' in hit ? hit.holder : undefined;
        if (h?.deduplicated && !this.tasks.has(h.id) && !this.finals.has(h.id) && !stored.has(h.id))
          stored.set(h.id, {
            id: h.id,
            batch: h.deduplicated.batch,
            state: h.deduplicated.state,
            attempts: 0,
            rev: 0,
          });
      }
    if (addKey !== undefined) {
      const known = (id: string) => this.tasks.get(id) ?? stored.get(id);
      const replay = replayOf(raw, addKey, onExisting, known, deduped);
      // An earlier try began while the ids were looked up: its answer decides this one's.
      if (this.addsInFlight.has(addKey))
        return this.addOnce(raw, batchName, calledAt, onExisting, addKey, true);
      if (replay) return replay;
    }
    const admitted = admit(raw, stored, this.admission, onExisting, deduped);
    if (!admitted.ok) return admitted;
    const { parsed, existing } = admitted;
    const batch = batchName ?? newId();
    if (parsed.length === 0) return { ok: true, batch, tasks: refsInOrder([], existing, deduped) };
    const inputs = expandBroadcasts(parsed, this.runners);
    const records: TaskRecord[] = inputs.map((p) =>
      newTaskRecord({
        id: p.id ?? p.presetId ?? newId(),
        module: p.module,
        params: p.params,
        priority: p.priority,
        dependencies: p.dependencies,
        batch,
        created: now,
        state: 'waiting',
        maxAttempts: p.maxAttempts ?? this.opts.maxAttempts,
        runTimeout: p.runTimeout,
        timeout: p.timeout,
        assignTimeout: p.assignTimeout,
        deadline: p.timeout ? (calledAt ?? now) + p.timeout : null,
        addKey,
        key: p.key,
        affinity: p.affinity,
        group: p.group,
        backfilled: p.backfilled,
        backoff: p.backoff,
        requires: p.requires,
        runner: p.runner,
        broadcast: p.broadcast === true,
        // A broadcast's copies are parts of it: the key is the broadcast's alone.
        dedup: p.dedup && !p.copy ? dedupOf(p.dedup, now) : null,
        runAt: p.runAt ?? (p.delay ? now + p.delay : null),
      }),
    );
    // Everything that can refuse the add does so before memory changes.
    let bytes = 0;
    for (const t of records) bytes += t.bytes = taskBytes(t);
    const full = bytesRoom(this.admission, bytes, records.length);
    if (full) return { ok: false, error: full };
    const prepared = this.store.prepareTasks(records.map((t, i) => firstDocOf(t, inputs[i].params ?? [])));
    if ('error' in prepared) return { ok: false, error: prepared.error };
    for (const t of records) {
      this.tasks.set(t.id, t);
      if (t.dedup) this.dedup.hold(t, now);
    }
    this.heldBytes += bytes;
    const depFailed: [TaskRecord, WireError][] = [];
    records.forEach((t, i) => {
      const failedDep = this.linkDependencies(t, stored);
      if (failedDep) depFailed.push([t, failedDep]);
      else if (t.broadcast && t.unmet === 0)
        depFailed.push([t, wireError('EATO', 'no connected runner to broadcast to')]);
      // The first state, not a change: the insert below writes it.
      else if (t.unmet === 0) t.state = 'ready';
      prepared.docs[i].state = t.state;
    });
    // Ids generated here are new: only the feeder's (and broadcast copies') need a look-up — and
    // with onExisting 'skip', the feeder's were looked up before admission already.
    const chosen = records.filter((_, i) => {
      const p = inputs[i];
      if (p.id === undefined || p.id === p.presetId) return false;
      return onExisting !== 'skip' || p.copy === true;
    });
    const written = this.store.insertTasks(
      prepared.docs,
      chosen.map((t) => t.id),
    );
    for (const o of this.observers) o.added(records);
    for (const t of records) {
      if (t.state === 'ready') this.enqueue(t);
      this.timeouts.track(t);
    }
    for (const [t, err] of depFailed) this.failForGood(t, err);
    this.stats.added += records.length;
    this.scheduleDistribute();
    const settle = addKey === undefined ? undefined : this.addsInFlight.hold(addKey);
    let w: AddWriteResult;
    try {
      w = await written;
      if (!w.ok) this.discard(records, w.error);
    } finally {
      settle?.();
    }
    if (!w.ok) {
      // A stored task has one of its ids: a retry of the add that stored it, if it has this key.
      if (w.taken && addKey !== undefined && !lookUp)
        return this.addOnce(raw, batchName, calledAt, onExisting, addKey, true);
      const at = records.findIndex((t) => t.id === w.id);
      let given = at >= 0 && !inputs[at].copy ? inputs.slice(0, at).filter((x) => !x.copy).length : -1;
      // Back to its index in the batch as given, counting the tasks skipped or deduplicated before it.
      const leftOut = [...existing.map((e) => e.index), ...(deduped?.keys() ?? [])].sort((a, b) => a - b);
      for (const i of leftOut) if (given >= 0 && i <= given) given++;
      if (w.error.code === 'EVALIDATION' && given >= 0) return { ok: false, error: idTaken(given, w.id) };
      return { ok: false, error: w.error };
    }
    await this.store.barrier();
    // Refs of the tasks as given, in input order (a broadcast's copies are not among them).
    const given = records.filter((_, i) => !inputs[i].copy);
    const warnings = this.unrunnableIn(parsed);
    return {
      ok: true,
      batch,
      tasks: refsInOrder(given, existing, deduped),
      ...(warnings.length > 0 ? { warnings } : {}),
    };
  }

  /**
   * What an add's reply warns of: its tasks whose module no connected runner can run. They are
   * stored all the same (the runner that has the module may connect later); a mistyped name shows.
   */
  private unrunnableIn(parsed: { module: string; broadcast?: boolean }[]): string[] {
    const counts = new Map<string, number>();
    for (const p of parsed) if (!p.broadcast) counts.set(p.module, (counts.get(p.module) ?? 0) + 1);
    const warnings: string[] = [];
    for (const [module, n] of counts) {
      const why = explainMissingModule(module, this.runners);
      if (why) warnings.push(`${n} task${n === 1 ? '' : 's'} of this add wait: ${why.message}`);
    }
    return warnings;
  }

  /**
   * An add the database refused: its tasks leave memory as if never added (nothing of them is
   * stored), and tasks of other adds that depend on them fail with EDEPFAILED. Not a transition:
   * the records cease to exist; `failed` only marks them final for anything still holding one.
   */
  private discard(records: TaskRecord[], error: WireError): void {
    const gone = new Set(records);
    for (const o of this.observers) o.discarded(records);
    for (const t of records) {
      // By identity: the task whose id made the add be refused keeps its place.
      if (this.tasks.get(t.id) === t) this.tasks.delete(t.id);
      this.dedup.dropped(t);
      this.heldBytes -= t.bytes ?? 0;
      if (isFinal(t.state)) this.finals.delete(t.id);
      this.timeouts.forget(t);
      this.store.forget(t);
      if (t.state === 'assigned' || t.state === 'running') this.releaseSlotOf(t);
      this.parking.resign(t);
      if (t.parkedBehind) this.parking.unpark(t);
      t.state = 'failed';
      this.stats.added--;
    }
    this.undelivered = this.undelivered.filter((o) => !records.some((t) => t.id === o.id));
    for (const t of records) {
      for (const h of t.parked ?? []) if (!gone.has(h)) this.enqueue(h);
      for (const d of t.dependents) if (!gone.has(d)) this.failForGood(d, depError(t.id, error));
    }
    this.scheduleDistribute();
  }

  // ---- reports from runners --------------------------------------------------------------------

  started(runnerId: string, refs: AttemptRef[]): void {
    for (const ref of refs) {
      const t = this.current(ref, runnerId);
      if (t && t.state === 'assigned') this.markRunning(t);
    }
  }

  /**
   * Progress of an attempt, from the runner `runnerId`: recorded (clamped to 0–1) only if that runner
   * holds the attempt now. Returns the value to pass on to feeders, or undefined for a report about an
   * attempt it does not hold (another runner's, an older one, a finished one), which is ignored.
   */
  progress(runnerId: string, ref: AttemptRef & { progress: number }): number | undefined {
    const t = this.current(ref, runnerId);
    if (!t) return undefined;
    t.progress = Math.min(1, Math.max(0, ref.progress));
    return t.progress;
  }

  /** Applies results; resolves once they are durable, with how many were accepted or stale. */
  async results(runnerId: string, results: AttemptResult[]): Promise<{ accepted: number; stale: number }> {
    let accepted = 0;
    let stale = 0;
    for (const res of results) {
      const t = this.current(res, runnerId);
      if (!t) {
        stale++;
        this.stats.stale++;
        limitLog(this.opts.logger, 'info', `stale:${runnerId}`, 'stale result ignored', {
          taskId: res.id,
          attempt: res.attempt,
          runnerId,
        });
        continue;
      }
      accepted++;
      const r = this.runners.get(runnerId);
      if (r && t.assignedAt) this.runners.recordRunTime(r, t.module, Date.now() - t.assignedAt);
      // Its gates close before its slot frees, so the tasks waiting for them stay waiting.
      const limited = !res.ok && res.error.code === 'ERATELIMITED';
      if (limited) this.rateLimited(t, res.error, runnerId);
      this.releaseSlotOf(t);
      if (limited) this.requeueLimited(t);
      else if (res.ok) this.complete(t, res.result, res.moduleHash);
      else if (res.error.code === 'EMODULE' && r)
        this.moduleFailed(t, r, capError(res.error), res.moduleHash);
      else this.attemptFailed(t, capError(res.error), res.unrecoverable === true, res.moduleHash);
    }
    this.scheduleDistribute();
    this.scheduleFlush();
    await this.store.barrier();
    return { accepted, stale };
  }

  /**
   * The task said it hit a limit (`this.rateLimited(ms)`, or an error with code ERATELIMITED): its
   * gates close for the time it gave (`details.retryAfter`, else RATE_LIMITED_DEFAULT_MS).
   */
  private rateLimited(t: TaskRecord, error: ReportedError, runnerId: string): void {
    const parsed = rateLimitedDetails.safeParse(error.details);
    const ms = parsed.success ? parsed.data.retryAfter : RATE_LIMITED_DEFAULT_MS;
    const gates = this.limits.pause(t, ms);
    limitLog(
      this.opts.logger,
      'info',
      `ratelimited:${t.module}`,
      'a task reported a rate limit: its selectors wait',
      {
        taskId: t.id,
        runnerId,
        selectors: gates.map((g) => g.label),
        ms,
        ...(parsed.success ? {} : { ignored: 'details.retryAfter: not a number of ms from 0 to 2^31-1' }),
      },
    );
  }

  /** Limits (`limitBook`) changed: loaded at activation, put or deleted through the API. */
  applyLimits(): void {
    const had = this.limits.any;
    this.limits.configure(this.limitBook.entries());
    // Held tasks may go now. With no limit before or after, nothing changed: no pass (a master's
    // activation with no limit would otherwise start a pass of its own).
    if (had || this.limits.any) this.scheduleDistribute();
  }

  /**
   * A runner could not load the task's module (EMODULE): the runner's problem, not the task's, as
   * another runner may well have the module. The runner is marked as lacking the module at the
   * version it failed on (the result's hash, else the one it announces) until it announces another,
   * and the attempt is requeued without counting. With no connected runner left that can run the
   * module, the task waits, and `explain` and the log say why — it never bounces between runners.
   * A task pinned to this runner (`runner`, a broadcast's copy) can run nowhere else: it fails.
   */
  private moduleFailed(
    t: TaskRecord,
    r: RunnerEntry,
    error: ReportedError,
    moduleHash: string | undefined,
  ): void {
    const version = moduleHash ?? announcedVersion(r, t.module) ?? null;
    if (r.unloadable?.get(t.module) !== version) {
      this.runners.markUnloadable(r, t.module, version);
      this.opts.logger.warn('runner cannot load a module: its tasks go to other runners that have it', {
        runnerId: r.id,
        module: t.module,
        version,
        error: error.message,
      });
    }
    if (t.runner === r.id) this.attemptFailed(t, error, true, moduleHash);
    else this.requeueUncounted(t);
  }

  /** A runner announced its modules anew: tasks waiting for one of them may run now. */
  modulesChanged(r: RunnerEntry, modules: ModuleInfo[]): void {
    this.runners.setModules(r, modules);
    this.scheduleDistribute();
  }

  /**
   * The task this report is about, if the report is for the attempt running now on this runner (the
   * caller has checked that the reporting connection holds `runnerId`). A task that is ready again —
   * requeued, or waiting out its retry backoff — runs nowhere, so nothing may finish it.
   */
  private current(ref: AttemptRef, runnerId: string): TaskRecord | undefined {
    const t = this.tasks.get(ref.id);
    return t && holdsAttempt(t, ref.attempt, runnerId) ? t : undefined;
  }

  /**
   * A runner gives back attempts it will not finish (it is shutting down): they are requeued at once,
   * without counting as a failure. Returns how many were still its own.
   */
  release(runnerId: string, refs: AttemptRef[]): number {
    let n = 0;
    for (const ref of refs) {
      const t = this.current(ref, runnerId);
      if (!t) continue;
      this.releaseSlotOf(t);
      this.requeueUncounted(t);
      n++;
    }
    this.scheduleFlush();
    return n;
  }

  /** Resolves once every change made so far is durable. */
  flushed(): Promise<void> {
    return this.store.barrier();
  }

  // ---- runners coming and going ----------------------------------------------------------------

  /**
   * A runner said hello (first time or after a reconnect). It keeps the attempts it reports that are
   * still its own, and takes back the ones lost from it that nobody has taken since (`reclaim`): a
   * finished result it holds is accepted rather than the task run again. The rest of what it reports
   * must be dropped. Attempts the master thought it held but it does not report are lost: they are
   * retried, and recovered ones (after a master restart) requeued at once, uncounted.
   */
  runnerUp(entry: RunnerEntry, holding: AttemptRef[]): AttemptRef[] {
    const prev = this.runners.get(entry.id);
    if (this.drainedByOperator.has(entry.id)) this.runners.setDraining(entry, true); // a drain outlives reconnects
    if (prev) this.runners.setLostTimer(prev, null);
    const drop: AttemptRef[] = [];
    const keep = new Set<string>();
    for (const ref of holding) {
      // Only the attempt this runner was given: a task reassigned since runs elsewhere.
      let t = this.current(ref, entry.id);
      let adopted = t !== undefined && this.orphans.delete(t);
      if (!t) {
        const lost = this.tasks.get(ref.id);
        if (lost && lost.attempts === ref.attempt && lost.lostFrom === entry.id) {
          this.reclaim(lost, entry);
          if (lost.state === 'assigned') [t, adopted] = [lost, true];
        }
      }
      if (!t) {
        drop.push(ref);
        continue;
      }
      // Adopted: a recovered or lost attempt that is in fact still running here.
      if (adopted && t.state === 'assigned') this.markRunning(t);
      // A recovered attempt had no run deadline in this master: it counts from now.
      if (adopted && !t.runDeadline) this.setRunDeadline(t, t.runTimeout || this.opts.defaultRunTimeout);
      keep.add(t.id);
      this.runners.reserveSlot(entry, t.id, t.priority);
    }
    if (prev) {
      for (const id of prev.active) {
        const t = this.tasks.get(id);
        if (t && !keep.has(id)) this.lose(t, 'the runner came back without this attempt');
      }
    }
    this.runners.put(entry);
    this.releaseOrphansOf(entry.id, keep);
    this.scheduleDistribute();
    this.scheduleFlush();
    return drop;
  }

  /** The runner's connection closed: its attempts wait `graceMs` for it to come back, then are retried. */
  runnerDown(runnerId: string, graceMs = this.opts.disconnectGraceMs): void {
    const r = this.runners.get(runnerId);
    if (!r) return;
    this.runners.markDown(r);
    const expire = () => {
      if (r.connected || !this.runners.remove(r)) return;
      this.opts.logger.info('runner left: it did not come back in time', {
        runnerId,
        attemptsRetried: r.active.size,
      });
      for (const id of r.active) {
        const t = this.tasks.get(id);
        if (t) this.lose(t, `runner ${runnerId} went away`);
      }
      this.runners.clearActive(r);
      this.scheduleDistribute();
      this.scheduleFlush();
    };
    if (graceMs <= 0 || this.closed) expire();
    else {
      this.runners.setLostTimer(r, setTimeout(expire, graceMs).unref());
    }
  }

  /** An attempt's runner is gone without it: a failure of the attempt (ERUNNERLOST), retried by the policy. */
  private lose(t: TaskRecord, why: string): void {
    if (t.state !== 'assigned' && t.state !== 'running') return;
    const from = t.who;
    this.releaseSlotOf(t);
    this.attemptFailed(t, wireError('ERUNNERLOST', why), false);
    // Its runner may come back with the attempt (finished, even) before anyone else takes it.
    if (from && (t.state as TaskState) === 'ready') t.lostFrom = from;
  }

  // ---- recovery --------------------------------------------------------------------------------

  /** Rebuilds memory from the database after a start: every `tasks` document not final. */
  async recover(): Promise<{ tasks: number; orphans: number; dropped: number }> {
    this.affinity.load(await this.store.loadAllocations());
    const { docs, journal, dropped, kept } = await this.store.loadForRecovery();
    const now = Date.now();
    const open: TaskRecord[] = [];
    // Each document brings its own copy of its add's key: the tasks of one add share one again.
    const addKeys = new Map<string, string>();
    for (const d of docs) {
      const t = recordFromDoc(d, this.opts.maxAttempts);
      if (t.addKey !== undefined) {
        const shared = addKeys.get(t.addKey);
        if (shared === undefined) addKeys.set(t.addKey, t.addKey);
        else t.addKey = shared;
      }
      const j = journal.get(t.id);
      if (j) {
        // The journal holds a newer state than the document: take it, and write it into `tasks`.
        applyJournal(t, j.change);
        this.store.adoptJournal(t, j.refs);
      }
      t.bytes = taskBytes(t);
      this.heldBytes += t.bytes;
      this.tasks.set(t.id, t);
      if (t.dedup) this.dedup.hold(t, now);
      if (isFinal(t.state)) {
        const finishedAt = t.finishedAt;
        this.finish(t);
        t.finishedAt = finishedAt ?? t.finishedAt;
        continue;
      }
      open.push(t);
    }
    // Final tasks whose dedup key is still taken: a key added before the restart stays taken after it.
    for (const k of kept ?? []) this.dedup.recovered(k, now);
    const outside = new Set<string>();
    for (const t of open) for (const d of t.dependencies) if (!this.tasks.has(d)) outside.add(d);
    const outsideStates = await this.store.fetchStates([...outside].filter((id) => !this.finals.has(id)));
    const failed: [TaskRecord, WireError][] = [];
    for (const t of open) {
      const failedDep = this.linkDependencies(t, outsideStates);
      if (failedDep) failed.push([t, failedDep]);
      // A broadcast whose copies all finished before the restart.
      else if (t.broadcast && t.unmet === 0 && t.state === 'waiting')
        this.completeBroadcast(t, outsideStates);
    }
    for (const t of open) {
      this.timeouts.track(t);
      if (t.state === 'waiting' && t.unmet === 0) this.markReady(t);
      else if (t.state === 'ready') this.enqueue(t);
      else if (t.state === 'assigned' || t.state === 'running') this.orphans.add(t);
    }
    for (const [t, err] of failed) this.failForGood(t, err);
    // Recovered attempts count against concurrency caps until they end.
    if (this.limits.any) this.limits.recount();
    const orphans = this.orphans.size;
    this.scheduleFlush();
    await this.store.barrier();
    return { tasks: open.length, orphans, dropped };
  }

  /**
   * The master accepts connections: the recovered attempts wait `recoveryGraceMs` from now (not from
   * the end of recovery, which can be long before the master listens) for their runners to report
   * them. The wait ends early once every runner that held one has said hello (`releaseOrphansOf`).
   * What is left then is requeued uncounted; its runner can still take it back until it is reassigned.
   */
  startRecoveryGrace(): void {
    if (this.orphans.size === 0 || this.graceTimer || this.closed) return;
    const holders = new Set([...this.orphans].map((t) => t.who));
    this.opts.logger.info('recovered attempts wait for their runners', {
      attempts: this.orphans.size,
      runners: holders.size,
      graceMs: this.opts.recoveryGraceMs,
    });
    this.graceTimer = setTimeout(() => {
      this.graceTimer = null;
      const late = [...this.orphans];
      for (const t of late) this.requeueOrphan(t);
      if (late.length > 0)
        this.opts.logger.warn('recovered attempts requeued: their runners did not report them in time', {
          attempts: late.length,
          runners: [...new Set(late.map((t) => t.lostFrom))].slice(0, 20),
          graceMs: this.opts.recoveryGraceMs,
        });
      this.scheduleFlush();
    }, this.opts.recoveryGraceMs);
    this.graceTimer.unref();
  }

  /**
   * Runner `runnerId` said hello: the recovered attempts it did not report (`kept` are the ones it
   * did) are not running anywhere; they are requeued now rather than after the grace.
   */
  private releaseOrphansOf(runnerId: string, kept: Set<string>): void {
    for (const t of this.orphans.size > 0 ? [...this.orphans] : [])
      if (t.who === runnerId && !kept.has(t.id)) {
        this.orphans.delete(t);
        if (t.state === 'assigned' || t.state === 'running') this.requeueUncounted(t);
      }
    if (this.orphans.size === 0 && this.graceTimer) {
      clearTimeout(this.graceTimer);
      this.graceTimer = null;
      this.opts.logger.info('every runner holding recovered attempts has reported');
    }
  }

  private requeueOrphan(t: TaskRecord): void {
    this.orphans.delete(t);
    if (t.state !== 'assigned' && t.state !== 'running') return;
    const from = t.who ?? undefined;
    this.releaseSlotOf(t);
    this.requeueUncounted(t, from);
  }

  // ---- affinity (API) ----------------------------------------------------------------------------

  /** Affinity key → runner id. */
  get allocations(): ReadonlyMap<string, string> {
    return this.affinity.allocations;
  }

  /** Forgets a key's runner; its next task is allocated afresh. */
  deallocate(key: string): boolean {
    if (!this.affinity.deallocate(key)) return false;
    this.scheduleDistribute();
    return true;
  }

  allocationsOf(runnerId?: string): { key: string; runner: string }[] {
    return this.affinity.allocationsOf(runnerId);
  }

  // ---- an operator's drain -------------------------------------------------------------------------

  /** Stops giving the runner new work; its running attempts finish. Returns false for an unknown runner. */
  drain(runnerId: string): boolean {
    const r = this.runners.get(runnerId);
    if (!r) return false;
    this.drainedByOperator.add(runnerId);
    this.runners.setDraining(r, true);
    this.opts.logger.info('runner drained: no new work', { runnerId, running: r.active.size });
    return true;
  }

  /** Lets a drained runner take work again. */
  undrain(runnerId: string): boolean {
    const r = this.runners.get(runnerId);
    this.drainedByOperator.delete(runnerId);
    if (!r) return false;
    this.runners.setDraining(r, false);
    this.opts.logger.info('runner undrained: takes work again', { runnerId });
    this.scheduleDistribute();
    return true;
  }

  // ---- cancelling ----------------------------------------------------------------------------

  /** Cancels tasks by id and/or batch; returns the ids cancelled (final ones are left alone). */
  cancel(ids: string[] | undefined, batch: string | undefined, by = 'a feeder'): string[] {
    const targets: TaskRecord[] = [];
    for (const id of ids ?? []) {
      const t = this.tasks.get(id);
      if (t) targets.push(t);
    }
    if (batch) for (const t of this.tasks.values()) if (t.batch === batch) targets.push(t);
    const cancelled: string[] = [];
    for (const t of targets) {
      if (isFinal(t.state)) continue;
      this.failForGood(t, wireError('ECANCELLED', `cancelled by ${by}`), 'cancelled');
      cancelled.push(t.id);
    }
    this.scheduleDistribute();
    this.scheduleFlush();
    return cancelled;
  }

  // ---- running again (operator retry) --------------------------------------------------------

  /**
   * revive: an operator's retry, "rerun from failed": final tasks run again.
   * Precondition: `docs` are stored tasks, current (the caller awaited the barrier), in dependency
   * order; `stored` holds the states of their dependencies that are neither in memory nor in `docs`.
   * Effect: each failed or cancelled task whose dependencies are done, live, or revived before it
   * goes back to waiting (or ready), with a fresh attempt budget: `uncounted` becomes the attempts so
   * far, so attempt numbers keep growing and still fence late reports from older attempts.
   * Record: the new state, written to its document with the next `rev` (a restart recovers it).
   * Outcome: the ids revived, and the refused ones with the reason.
   */
  revive(
    docs: TaskDoc[],
    stored: Map<string, StoredState>,
  ): { revived: string[]; refused: { id: string; error: WireError }[] } {
    const revived: string[] = [];
    const refused: { id: string; error: WireError }[] = [];
    for (const d of docs) {
      const refuse = (message: string) => refused.push({ id: d._id, error: wireError('ESTATE', message) });
      if (this.tasks.has(d._id)) {
        refuse(`task "${d._id}" is ${this.tasks.get(d._id)?.state}, not failed or cancelled`);
        continue;
      }
      if (d.state !== 'failed' && d.state !== 'cancelled') {
        refuse(`task "${d._id}" is ${d.state}, not failed or cancelled`);
        continue;
      }
      if (d.broadcast) {
        refuse(`task "${d._id}" is a broadcast: add it again instead`);
        continue;
      }
      const blocked = (d.dependencies ?? []).find(
        (dep) => !this.tasks.has(dep) && (this.finals.get(dep) ?? stored.get(dep))?.state !== 'done',
      );
      if (blocked) {
        refuse(`dependency "${blocked}" did not succeed: retry it, and this task runs again after it`);
        continue;
      }
      const t = recordFromDoc(d, this.opts.maxAttempts);
      t.error = null;
      t.who = null;
      t.uncounted = t.attempts;
      // A call timeout belongs to the call that added the task, which is over.
      t.deadline = null;
      t.bytes = taskBytes(t);
      this.heldBytes += t.bytes;
      this.tasks.set(t.id, t);
      this.finals.delete(t.id);
      if (t.dedup) this.dedup.hold(t, Date.now());
      this.linkDependencies(t, stored);
      if (t.unmet > 0) this.record(t, 'waiting');
      else this.markReady(t);
      this.timeouts.track(t);
      this.stats.retried++;
      revived.push(t.id);
    }
    this.scheduleDistribute();
    this.scheduleFlush();
    return { revived, refused };
  }

  // ---- the queue -----------------------------------------------------------------------------------

  /** Tasks stored but not running: what `queueLimit` bounds. */
  queuedCount(): number {
    let n = 0;
    for (const t of this.tasks.values()) if (t.state === 'waiting' || t.state === 'ready') n++;
    return n;
  }

  // ---- why not ------------------------------------------------------------------------------------

  /**
   * Why task `taskId` does not run (yet), or not on runner `runnerId`: for a ready task, the first
   * reason the policy list gives, asked in the order `distribute` asks it (`Pipeline.explain`). Slow
   * (it walks the runners); never on the hot path.
   */
  explain(taskId: string, runnerId?: string): Reason {
    const t = this.tasks.get(taskId);
    if (!t) {
      const fin = this.finals.get(taskId);
      return fin
        ? reason('FINAL', `task ${taskId} is ${fin.state}`)
        : reason('UNKNOWN_TASK', `task ${taskId} is not in memory (final, purged, or never added)`);
    }
    if (t.state === 'assigned' || t.state === 'running')
      return reason('ASSIGNED', `${t.state} on runner ${t.who} (attempt ${t.attempts})`);
    if (t.state === 'waiting') return this.waitingFor(t);
    if (isFinal(t.state)) return reason('FINAL', `task ${taskId} is ${t.state}`);
    const r = runnerId === undefined ? undefined : this.runners.get(runnerId);
    if (runnerId !== undefined && !r) return reason('UNKNOWN_RUNNER', `no runner ${runnerId}`);
    const why = this.pipeline.explain(this.ctx, t, Date.now(), r);
    return why.code === 'QUEUED' ? reason('QUEUED', `${why.message}${this.turnsOf(t)}`) : why;
  }

  /** For a queued task whose priority other groups share: that it takes turns with them, and its share. */
  private turnsOf(t: TaskRecord): string {
    const group = t.group ?? null;
    const { groups, weight, totalWeight } = this.ready.turns({ priority: t.priority, seq: t.seq, group });
    if (groups < 2) return '';
    const name = group === null ? 'the default group' : `group "${group}"`;
    const others = groups - 1;
    return `; ${name} takes turns with ${others} other ${others === 1 ? 'group' : 'groups'} at this priority (weight ${weight} of ${totalWeight})`;
  }

  /**
   * Modules that ready tasks wait for because no connected runner can run them (status): how many
   * tasks wait for each, and why. Walks the tasks in memory, and only when some module is missing.
   */
  waitingForModules(): { module: string; tasks: number; why: string }[] {
    if (this.unrunnable.size === 0) return [];
    const counts = new Map<string, number>([...this.unrunnable.keys()].map((m) => [m, 0]));
    for (const t of this.tasks.values()) {
      const n = t.state === 'ready' ? counts.get(t.module) : undefined;
      if (n !== undefined) counts.set(t.module, n + 1);
    }
    const out: { module: string; tasks: number; why: string }[] = [];
    for (const [module, tasks] of counts) {
      const why = tasks > 0 ? explainMissingModule(module, this.runners) : null;
      if (why) out.push({ module, tasks, why: why.message });
    }
    return out;
  }

  private waitingFor(t: TaskRecord): Reason {
    const now = Date.now();
    const open = t.dependencies.filter((d) => this.tasks.has(d));
    const then = delayedUntil(t, now) > 0 ? `; then ${describeDelay(t.runAt as number, now)}` : '';
    if (open.length === 0) return reason('DEPENDENCY', `waiting${then}`);
    const named = open
      .slice(0, 5)
      .map((d) => `${d} (${this.tasks.get(d)?.state})`)
      .join(', ');
    const more = open.length > 5 ? ', …' : '';
    return reason(
      'DEPENDENCY',
      `waiting for ${open.length === 1 ? 'dependency' : 'dependencies'} ${named}${more} not done${then}`,
    );
  }

  // ---- watching --------------------------------------------------------------------------------

  /** Outcomes already final among these ids; ids the master does not know at all. */
  async lookup(ids: string[]): Promise<{ outcomes: TaskOutcome[]; unknown: string[] }> {
    const outcomes: TaskOutcome[] = [];
    const ask: string[] = [];
    for (const id of ids) {
      const f = this.finals.get(id);
      if (f) outcomes.push(f);
      else if (!this.tasks.has(id)) ask.push(id);
    }
    const stored = await this.store.fetchStates(ask);
    const unknown: string[] = [];
    for (const id of ask) {
      const s = stored.get(id);
      if (s && isFinal(s.state)) outcomes.push(outcomeOf(s));
      else unknown.push(id);
    }
    return { outcomes, unknown };
  }

  /** The id of the task that holds dedup key `key` now, if one does. */
  dedupHolder(key: string): string | undefined {
    return this.dedup.holderOf(key, Date.now())?.id;
  }

  /** How many dedup keys are taken now (each one an entry of the key index). */
  get dedupKeys(): number {
    return this.dedup.size;
  }

  /** Purged tasks: their outcomes are forgotten, so their ids can be used again. */
  forgetFinals(ids: string[]): void {
    for (const id of ids) this.finals.delete(id);
    this.dedup.forget(ids);
  }

  async close(): Promise<void> {
    this.abandon();
    await this.store.barrier();
  }

  /** Stops every timer and decision, and waits for no write: this master lost its lease. */
  abandon(): void {
    this.closed = true;
    if (this.graceTimer) clearTimeout(this.graceTimer);
    for (const r of this.runners.values()) if (r.lostTimer) clearTimeout(r.lostTimer);
    this.wakeups.close();
    this.dedup.close();
  }
}

/** A task's dedup key as held: a ttl becomes the time the key is free again. */
function dedupOf(d: { key: string; ttl?: number }, now: number): Dedup {
  return d.ttl === undefined ? { key: d.key } : { key: d.key, until: now + d.ttl };
}

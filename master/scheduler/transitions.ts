/**
 * The transitions of a task, one named method each (inputs/outputs in each header), asserted against
 * the table in protocol/states.ts and recorded through the store; and what happens around them
 * (parked tasks settled, dependents released, timeouts). The queue, distribution and the flush are
 * the core's (master/scheduler/core.ts); the entry points are the Scheduler's (scheduler.ts).
 */
import { limitLog } from '../../common/log-limit';
import { depError, wireError, type ReportedError, type WireError } from '../../protocol/errors';
import type { Assignment } from '../../protocol/schemas';
import { assertTransition, isFinal, type TaskState } from '../../protocol/states';
import { outcomeOf, SchedulerCore } from './core';
import { DedupIndex } from './dedup';
import { explainMissingModule } from './policies/eligibility';
import type { RunnerEntry } from './runner-registry';
import type { StoredState } from '../task-store';
import { addDependent, paramsOf, type TaskRecord } from '../task-record';

export class SchedulerTransitions extends SchedulerCore {
  /** Dedup keys taken now (master/scheduler/dedup.ts). */
  protected readonly dedup = new DedupIndex();

  /**
   * Counts a task's unmet dependencies and registers it as their dependent. Dependencies no longer
   * in memory are looked up in `stored`; returns the error to fail the task with if one of them
   * failed, was cancelled, or cannot be found.
   */
  protected linkDependencies(t: TaskRecord, stored: Map<string, StoredState>): WireError | null {
    let failed: WireError | null = null;
    for (const d of t.dependencies) {
      const live = this.tasks.get(d);
      if (live) {
        t.unmet++;
        addDependent(live, t);
        continue;
      }
      const fin = this.finals.get(d) ?? stored.get(d);
      if (!fin) failed ??= wireError('EDEPFAILED', `dependency "${d}" is not in the database`);
      else if (fin.state !== 'done' && !t.broadcast) failed ??= depError(d, fin.error);
    }
    return failed;
  }

  // ---- transitions -------------------------------------------------------------------------------
  // Each one: precondition (the `from` states, asserted by `record`), effect, the record the store
  // writes, and the outcome. `record` writes the task's document through the journal (`update`,
  // awaited by the next barrier), except `running`, folded lazily (`fold`): nobody waits for it, and a
  // restart treats assigned and running alike.

  /**
   * Records `t`'s change to `to`: asserts the table, bumps `rev`, tells the observers, writes.
   * Throws IllegalTransition (EINTERNAL) for a change the table does not allow.
   */
  protected record(t: TaskRecord, to: TaskState): void {
    const prev = t.state;
    assertTransition(t.id, prev, to);
    t.state = to;
    t.rev++;
    for (const o of this.observers) o.changed(t, prev);
    if (to === 'running') return this.store.fold(t);
    const refused = this.store.update(t);
    if (refused) this.persistFailed(t, refused);
  }

  /**
   * markReady. Precondition: waiting, no unmet dependency. Effect: queued by priority.
   * Record: state ready. Outcome: distributed on the next pass.
   */
  protected markReady(t: TaskRecord): void {
    this.record(t, 'ready');
    this.enqueue(t);
  }

  /**
   * assign. Precondition: ready, chosen by `distribute` for `r`. Effect: a new attempt (attempts+1)
   * held by `r`, which reserves a slot; the task leads its key (parking). Record: state assigned,
   * attempts, who, when. Outcome: the assignment goes out at the next flush, after the record is
   * durable, with its dependencies' results.
   */
  protected assign(t: TaskRecord, r: RunnerEntry): void {
    t.attempts++;
    t.who = r.id;
    t.lostFrom = null;
    t.assignedAt = Date.now();
    this.runners.reserveSlot(r, t.id, t.priority);
    this.parking.lead(t);
    this.record(t, 'assigned');
    // Assigned ahead of its limit's opening: sent when it opens (`sendAt`).
    const sendAt = this.limits.any ? this.limits.assigned(t) : 0;
    this.stats.assigned++;
    let list = this.unsent.get(r);
    if (!list) this.unsent.set(r, (list = []));
    const a: Assignment = {
      id: t.id,
      attempt: t.attempts,
      module: t.module,
      params: paramsOf(t),
      priority: t.priority,
      batch: t.batch,
    };
    // The runner enforces the run timeout (ETO), and the master after a grace should it say nothing
    // (master/scheduler/policies/timeouts.ts).
    const runTimeout = t.runTimeout || this.opts.defaultRunTimeout;
    if (runTimeout) a.runTimeout = runTimeout;
    this.setRunDeadline(t, runTimeout);
    if (t.dependencies.length > 0 && !t.broadcast) this.dependencyResults.attach(a, t.dependencies);
    this.assignedRecord.set(a, t);
    if (sendAt > 0) this.sendAt.set(a, sendAt);
    list.push(a);
  }

  /**
   * markRunning. Precondition: assigned, the report for its current attempt from its runner.
   * Effect: none beyond the state. Record: state running, folded lazily. Outcome: none.
   */
  protected markRunning(t: TaskRecord): void {
    this.record(t, 'running');
    if (this.limits.any) this.limits.began(t);
  }

  /**
   * complete. Precondition: assigned or running (the fenced result of its current attempt), or a
   * waiting broadcast whose copies are all final. Effect: done with its result; its slot is already
   * released by the caller; parked tasks share the result; dependents count one dependency less.
   * Record: state done, result, moduleHash, completed. Outcome: delivered at the next flush. If the
   * result cannot be stored (EPERSIST, see `persistFailed`) the task fails, and its dependents too.
   */
  protected complete(t: TaskRecord, result: unknown, moduleHash?: string): void {
    t.result = result === undefined ? null : result;
    t.moduleHash = moduleHash ?? null;
    t.error = null;
    this.record(t, 'done');
    if (t.state !== 'done') {
      this.stats.failed++;
      this.finish(t);
      this.settleParked(t);
      for (const d of t.dependents) this.failForGood(d, depError(t.id, t.error));
      return;
    }
    this.stats.done++;
    this.finish(t);
    this.settleParked(t);
    for (const d of t.dependents) this.dependencySettled(d);
  }

  /**
   * shareOutcome. Precondition: ready, parked behind `leader`, which is done. Effect: done with the
   * leader's result, without running. Record: state done, result. Outcome: delivered at the next flush.
   */
  protected shareOutcome(t: TaskRecord, leader: TaskRecord): void {
    t.result = leader.result;
    t.moduleHash = leader.moduleHash ?? null;
    this.record(t, 'done');
    this.stats.done++;
    this.finish(t);
    for (const d of t.dependents) this.dependencySettled(d);
  }

  /**
   * retry. Precondition: assigned or running; the attempt failed and the retry policy allows another.
   * Effect: ready again, counting the attempt, and queued; the `backoff` policy holds it until
   * `retryAt`. Record: state ready, error, retryAt. Outcome: none until a later attempt ends.
   */
  protected retry(t: TaskRecord, error: ReportedError): void {
    t.who = null;
    t.error = error;
    const wait = this.retries.delay(t);
    // Before the record: the change written to the database carries it, so a restart keeps the wait.
    t.retryAt = wait > 0 ? Date.now() + wait : null;
    this.record(t, 'ready');
    this.stats.retried++;
    this.enqueue(t);
  }

  /**
   * requeueUncounted. Precondition: assigned or running; the attempt was lost through no fault of the
   * task (its runner gave it back, never came back after a master restart, or could not load its
   * module: EMODULE, see `Scheduler.results`). Effect: ready and
   * queued; attempt numbers keep growing (they fence late reports) and `uncounted` keeps this one out
   * of `maxAttempts`. Record: state ready, uncounted. Outcome: none.
   */
  protected requeueUncounted(t: TaskRecord, lostFrom?: string): void {
    t.who = null;
    t.uncounted = (t.uncounted ?? 0) + 1;
    t.lostFrom = lostFrom ?? null;
    t.retryAt = null;
    this.record(t, 'ready');
    this.enqueue(t);
  }

  /**
   * requeueLimited. Precondition: assigned or running; the attempt reported ERATELIMITED (the task
   * hit a limit of what it calls), its gates closed already (`Limits.pause`). Effect: ready, back at
   * its place in the queue (its sequence number kept), not counted against `maxAttempts`.
   * Record: state ready, uncounted. Outcome: none; it runs again once its gates open.
   */
  protected requeueLimited(t: TaskRecord): void {
    t.who = null;
    t.uncounted = (t.uncounted ?? 0) + 1;
    t.lostFrom = null;
    this.record(t, 'ready');
    t.readyAt = Date.now();
    this.requeueInPlace(t, t.seq);
  }

  /**
   * reclaim. Precondition: ready, its attempt lost from runner `r` (`lostFrom`) and not reassigned
   * since; `r` reports that it still holds this very attempt (running, or finished with a result it
   * has not had acknowledged). Effect: assigned to `r` again, the same attempt, its slot reserved,
   * the loss's error cleared (a loss that was not counted stays uncounted: at worst one attempt more).
   * Record: state assigned, who. Outcome: the runner's result for the attempt is accepted, so finished
   * work never runs twice because its runner came back late.
   */
  protected reclaim(t: TaskRecord, r: RunnerEntry): void {
    if (t.lostFrom !== r.id || t.state !== 'ready') return;
    t.error = null;
    t.lostFrom = null;
    t.retryAt = null;
    t.who = r.id;
    this.runners.reserveSlot(r, t.id, t.priority);
    this.parking.lead(t);
    this.record(t, 'assigned');
    if (this.limits.any) this.limits.adopt(t);
  }

  /**
   * failForGood. Precondition: not final. Effect: failed (or cancelled); an attempt in flight is
   * cancelled where it runs and its slot released; parked tasks share the failure (or run on their
   * own after a cancel); every task that depends on it fails with EDEPFAILED, transitively (a
   * broadcast counts a failed copy as settled). Record: state, error, for each. Outcome: delivered at
   * the next flush, for each.
   */
  protected failForGood(t: TaskRecord, error: ReportedError, state: 'failed' | 'cancelled' = 'failed'): void {
    const stack: [TaskRecord, ReportedError, 'failed' | 'cancelled'][] = [[t, error, state]];
    while (stack.length > 0) {
      const [x, err, st] = stack.pop() as [TaskRecord, ReportedError, 'failed' | 'cancelled'];
      if (isFinal(x.state)) continue;
      const runner = x.who ? this.runners.get(x.who) : undefined;
      if (runner && (x.state === 'assigned' || x.state === 'running')) {
        // Stop the attempt where it runs; whatever it reports later is stale.
        this.runners.cancel(runner, [{ id: x.id, attempt: x.attempts }], err.code);
      }
      this.releaseSlotOf(x);
      if (x.parkedBehind) this.parking.unpark(x);
      x.error = err;
      this.record(x, st);
      if (st === 'cancelled') this.stats.cancelled++;
      else this.stats.failed++;
      this.finish(x);
      this.settleParked(x);
      for (const d of x.dependents) {
        // A broadcast reports each copy's outcome, failed ones included.
        if (d.broadcast) this.dependencySettled(d);
        else stack.push([d, depError(x.id, err), 'failed']);
      }
    }
  }

  /**
   * persistFailed. Precondition: the database cannot store `t`'s latest change (its result, say).
   * Effect: failed with EPERSIST instead, in memory and in the outcome about to be delivered.
   * Record: state failed, error (a restart finds it failed, so it never runs again). Outcome: the
   * delivered outcome says failed.
   */
  protected persistFailed(t: TaskRecord, error: WireError): void {
    const prev = t.state;
    if (prev !== 'failed') assertTransition(t.id, prev, 'failed');
    t.state = 'failed';
    for (const o of this.observers) o.changed(t, prev);
    t.result = undefined;
    t.error = error;
    const o = this.finals.get(t.id);
    if (o) {
      o.state = 'failed';
      delete o.result;
      o.error = error;
    }
    if (this.store.update(t)) this.opts.logger.error('even the failure cannot be stored', { taskId: t.id });
  }

  /** The server refused a task's new state when it was written; the failure replaces it. */
  protected stateRefused(t: TaskRecord, error: WireError): void {
    if (t.state === 'done') {
      this.stats.done--;
      this.stats.failed++;
    }
    this.persistFailed(t, error);
  }

  // ---- around the transitions ----------------------------------------------------------------------

  /** The leader reached a final state: its parked tasks share its outcome, or run on their own if it was cancelled. */
  protected settleParked(leader: TaskRecord): void {
    for (const t of this.parking.takeParked(leader)) {
      if (isFinal(t.state)) continue;
      if (leader.state === 'done') this.shareOutcome(t, leader);
      else if (leader.state === 'failed') this.failForGood(t, leader.error ?? wireError('ETASK'));
      else this.enqueue(t);
    }
  }

  /** One of `d`'s dependencies is done (or, for a broadcast, any of its copies is final). */
  protected dependencySettled(d: TaskRecord): void {
    if (d.state !== 'waiting') return;
    if (--d.unmet > 0) return;
    if (d.broadcast) return this.completeBroadcast(d);
    this.markReady(d);
  }

  /** Every copy of a broadcast is final: it is done, its result one outcome per runner. */
  protected completeBroadcast(p: TaskRecord, stored?: Map<string, StoredState>): void {
    const result: Record<string, unknown> = {};
    for (const id of p.dependencies) {
      const o = this.finals.get(id) ?? stored?.get(id);
      const runner = id.slice(id.lastIndexOf('@') + 1);
      if (o)
        result[runner] =
          o.state === 'done' ? { state: o.state, result: o.result } : { state: o.state, error: o.error };
    }
    this.complete(p, result);
  }

  /** An attempt failed (reported, or its runner lost): retried if the policy allows, else failed for good. */
  protected attemptFailed(
    t: TaskRecord,
    error: ReportedError,
    unrecoverable: boolean,
    moduleHash?: string,
  ): void {
    t.moduleHash = moduleHash ?? t.moduleHash ?? null;
    if (this.retries.mayRetry(t, unrecoverable)) this.retry(t, error);
    else this.failForGood(t, error);
  }

  /** A task's timeout expired (master/scheduler/policies/timeouts.ts): it fails for good. */
  protected timedOut(t: TaskRecord, error: WireError): void {
    // A task that never found a runner with its module says so: a mistyped name is plain to see.
    const missing = t.state === 'ready' ? explainMissingModule(t.module, this.runners) : null;
    if (missing) error = { ...error, message: `${error.message}: ${missing.message}` };
    this.failForGood(t, error);
    if (error.code !== 'EATO') return;
    const o = this.finals.get(t.id);
    if (o) this.emit('assigntimeout', o);
  }

  /** The current attempt's run deadline: `runTimeout` plus the grace from now (none without one). */
  protected setRunDeadline(t: TaskRecord, runTimeout: number | null | undefined): void {
    t.runDeadline = runTimeout ? Date.now() + runTimeout + (this.opts.runTimeoutGraceMs ?? 30_000) : null;
    this.timeouts.trackRun(t);
  }

  /**
   * runTimedOut. Precondition: assigned or running, its run deadline passed with no result from its
   * runner. Effect: the runner's slot is freed and it is told to cancel the attempt (a later report is
   * stale). Record and outcome: those of the runner's own ETO report — the attempt failed, retried if
   * the policy allows, else failed for good.
   */
  protected runTimedOut(t: TaskRecord): void {
    if (t.state !== 'assigned' && t.state !== 'running') return;
    const runTimeout = t.runTimeout || this.opts.defaultRunTimeout;
    const grace = this.opts.runTimeoutGraceMs ?? 30_000;
    const r = t.who ? this.runners.get(t.who) : undefined;
    const ref = { id: t.id, attempt: t.attempts };
    limitLog(
      this.opts.logger,
      'warn',
      `runtimeout:${t.who}`,
      'attempt taken back: no result from its runner past its run timeout',
      {
        taskId: t.id,
        attempt: t.attempts,
        runnerId: t.who,
        runTimeout,
        runTimeoutGraceMs: grace,
      },
    );
    this.releaseSlotOf(t);
    if (r?.connected) this.runners.cancel(r, [ref], 'ETO');
    this.attemptFailed(
      t,
      wireError(
        'ETO',
        `run timeout: no result within ${runTimeout} ms (and ${grace} ms of grace) from runner ${t.who}; the master took the attempt back`,
      ),
      false,
    );
  }

  /** A final task leaves memory; its outcome is kept (bounded) and queued for delivery. */
  protected finish(t: TaskRecord): void {
    const now = Date.now();
    t.finishedAt = now;
    this.tasks.delete(t.id);
    this.heldBytes -= t.bytes ?? 0;
    this.timeouts.forget(t);
    this.parking.resign(t);
    if (t.dedup) this.dedup.finished(t, now);
    const outcome = outcomeOf(t);
    this.finals.set(t.id, outcome);
    if (this.finals.size > this.opts.finalCacheSize) {
      const oldest = this.finals.keys().next().value as string;
      this.finals.delete(oldest);
    }
    this.undelivered.push(outcome);
  }
}

/**
 * Runners the master knows: their slots, the attempts they hold and how to reach them. A runner keeps
 * its entry across a disconnect for the grace period, so a quick reconnect keeps its work.
 *
 * Every change to an entry goes through `RunnerRegistry`; the scheduler reaches a runner only through
 * the `RunnerLink` its connection registered (the Socket.IO namespace and the original protocol each
 * provide one), so nothing outside this file calls into a socket on the scheduler's behalf.
 */
import type { Assignment } from '../../protocol/schemas';
import type { AttemptRef } from '../../protocol/events';
import { announcedName, type ModuleInfo } from '../../protocol/schemas';
import { planSlots, rangeOf, type SlotPlan } from './priority-slots';

/** How the master reaches one runner; each protocol (runner namespace, original protocol) implements it. */
export interface RunnerLink {
  /** Hands over attempts (already durable as assigned). */
  assign(tasks: Assignment[]): void;
  /** Asks the runner to stop these attempts; whatever they report later is stale. */
  cancel(tasks: AttemptRef[], reason: string): void;
}

export interface RunnerEntry {
  id: string;
  hostname?: string;
  pid?: number;
  slots: number;
  workers: number;
  data: Record<string, unknown>;
  modules: ModuleInfo[];
  /**
   * Module name → hash, as announced: only these modules are sent to the runner. Absent for a runner
   * that announces none (the original protocol, or a hello without `modules`): any module goes to it.
   */
  moduleIndex?: Map<string, string>;
  /**
   * Modules (as tasks name them) this runner reported EMODULE for, with the announced hash of the
   * version it failed on (null: none announced). It lacks such a module until it announces another
   * version (see `hasModule`, master/scheduler/policies/eligibility.ts).
   */
  unloadable?: Map<string, string | null>;
  /** Task ids of the attempts this runner holds. */
  active: Set<string>;
  prioritySlots?: Record<string, number>;
  /** Slot limits per priority range, and how many slots the attempts of each range take. */
  plan: SlotPlan;
  perRange: number[];
  /** Average run time in ms per module on this runner (moving average of the last results). */
  runTimes?: Map<string, number>;
  connected: boolean;
  /** Takes no new work (an operator's drain, or the runner shutting down). */
  draining?: boolean;
  legacy: boolean;
  /** The connection (socket id) that holds this runner id; reports from any other are refused. */
  conn: string;
  since: number;
  link: RunnerLink;
  lostTimer: NodeJS.Timeout | null;
}

/** What a connection tells about its runner; the rest of the entry starts empty. */
export type RunnerHello = Pick<
  RunnerEntry,
  'id' | 'slots' | 'workers' | 'data' | 'legacy' | 'conn' | 'link'
> &
  Partial<Pick<RunnerEntry, 'hostname' | 'pid' | 'prioritySlots'>> & {
    /** The modules it announces; absent: it announces none, and any module is sent to it. */
    modules?: ModuleInfo[];
    /** Slot limits per priority range (`slotPlan`); default: the hello's `slots` and `prioritySlots`. */
    planned?: { plan: SlotPlan; perRange: number[] };
    sacred?: boolean;
  };

/** A connected runner's entry, holding no attempt yet. */
export function runnerEntry(h: RunnerHello): RunnerEntry {
  const { planned, sacred, modules, ...fields } = h;
  return {
    ...fields,
    modules: modules ?? [],
    ...(modules ? { moduleIndex: indexModules(modules) } : {}),
    active: new Set(),
    ...(planned ?? slotPlan(h.slots, h.prioritySlots, sacred === true)),
    connected: true,
    since: Date.now(),
    lostTimer: null,
  };
}

function indexModules(modules: ModuleInfo[]): Map<string, string> {
  return new Map(modules.map((m) => [m.name, m.hash]));
}

export function freeSlots(r: RunnerEntry): number {
  return r.connected ? r.slots - r.active.size : 0;
}

export function slotPlan(slots: number, prioritySlots: Record<string, number> | undefined, sacred: boolean) {
  const plan = planSlots(slots, prioritySlots, sacred);
  return { plan, perRange: new Array(plan.cumulative.length).fill(0) as number[] };
}

/** The attempt of `taskId` takes one of the runner's slots (once). */
export function reserveSlot(r: RunnerEntry, taskId: string, priority: number): void {
  if (r.active.has(taskId)) return;
  r.active.add(taskId);
  r.perRange[rangeOf(r.plan, priority)]++;
}

/** The attempt of `taskId` gives its slot back. */
export function releaseSlot(r: RunnerEntry, taskId: string, priority: number): void {
  if (!r.active.delete(taskId)) return;
  r.perRange[rangeOf(r.plan, priority)]--;
}

/** Folds one measured run time into the runner's moving average for the module. */
export function recordRunTime(r: RunnerEntry, module: string, ms: number): void {
  r.runTimes ??= new Map();
  const prev = r.runTimes.get(module);
  r.runTimes.set(module, prev === undefined ? ms : prev * 0.8 + ms * 0.2);
}

export function describeRunner(r: RunnerEntry): Record<string, unknown> {
  return {
    id: r.id,
    hostname: r.hostname ?? null,
    pid: r.pid ?? null,
    connected: r.connected,
    draining: r.draining === true,
    idle: r.active.size === 0,
    legacy: r.legacy,
    slots: r.slots,
    prioritySlots: r.prioritySlots ?? null,
    inUse: r.active.size,
    workers: r.workers,
    data: r.data,
    modules: r.modules,
    unloadable: [...(r.unloadable ?? [])].map(([module, hash]) => ({ module, hash })),
    since: r.since,
  };
}

/** Why a hello was refused: another live connection holds the id, or this connection is another runner. */
export class RunnerIdConflict extends Error {
  readonly code = 'ERUNNERID';
}

/**
 * Every runner entry and every change to one. A runner id belongs to the connection that claimed it:
 * a second connection claiming a held id is refused until the first one is gone, and reports are
 * accepted only from the connection that holds the entry (`heldBy`). An entry whose connection closed
 * stays for the scheduler's grace period (its work waits for it), and the next connection may claim it.
 */
export class RunnerRegistry {
  private readonly entries = new Map<string, RunnerEntry>();
  /** Counts the changes that may let a runner run a module it could not: an entry put, modules announced. */
  generation = 0;

  get size(): number {
    return this.entries.size;
  }

  get(id: string): RunnerEntry | undefined {
    return this.entries.get(id);
  }

  values(): IterableIterator<RunnerEntry> {
    return this.entries.values();
  }

  /** The entry of runner `id` if connection `conn` holds it and is still connected. */
  heldBy(id: string, conn: string): RunnerEntry | undefined {
    const e = this.entries.get(id);
    return e && e.connected && e.conn === conn ? e : undefined;
  }

  /** Throws `RunnerIdConflict` when another live connection holds `entry.id`. */
  checkClaim(entry: RunnerEntry): RunnerEntry | undefined {
    const prev = this.entries.get(entry.id);
    if (prev && prev.connected && prev.conn !== entry.conn)
      throw new RunnerIdConflict(
        `runner id "${entry.id}" is held by another live connection; retry once it is gone`,
      );
    return prev;
  }

  /**
   * Registers `entry` in place of whatever had its id (checked with `checkClaim` first). A reconnect
   * keeps the modules it failed to load: they stay unrunnable there until it announces another version.
   */
  put(entry: RunnerEntry): void {
    const prev = this.checkClaim(entry);
    if (prev?.unloadable && prev !== entry) entry.unloadable ??= prev.unloadable;
    this.entries.set(entry.id, entry);
    this.generation++;
  }

  /** Removes the entry if it is still this one (a newer connection may have replaced it). */
  remove(entry: RunnerEntry): boolean {
    if (this.entries.get(entry.id) !== entry) return false;
    this.entries.delete(entry.id);
    return true;
  }

  /** Runners as the status API shows them. */
  describe(): Record<string, unknown>[] {
    return [...this.entries.values()].map(describeRunner);
  }

  /** Hands attempts to the runner, if its connection is still up (a closed one gets them back on hello). */
  send(entry: RunnerEntry, tasks: Assignment[]): void {
    if (entry.connected && tasks.length > 0) entry.link.assign(tasks);
  }

  cancel(entry: RunnerEntry, tasks: AttemptRef[], reason: string): void {
    entry.link.cancel(tasks, reason);
  }

  markDown(entry: RunnerEntry): void {
    entry.connected = false;
  }

  setDraining(entry: RunnerEntry, draining: boolean): void {
    entry.draining = draining;
  }

  setModules(entry: RunnerEntry, modules: ModuleInfo[]): void {
    entry.modules = modules;
    entry.moduleIndex = indexModules(modules);
    this.generation++;
    // A mark for a version no longer announced says nothing any more.
    for (const [module, hash] of entry.unloadable ?? [])
      if (entry.moduleIndex.get(announcedName(module)) !== hash) entry.unloadable?.delete(module);
  }

  /** The runner reported EMODULE for `module` at version `hash`: it lacks it until another version. */
  markUnloadable(entry: RunnerEntry, module: string, hash: string | null): void {
    (entry.unloadable ??= new Map()).set(module, hash);
  }

  setSlots(entry: RunnerEntry, slots: number): void {
    entry.slots = slots;
  }

  reserveSlot(entry: RunnerEntry, taskId: string, priority: number): void {
    reserveSlot(entry, taskId, priority);
  }

  releaseSlot(entry: RunnerEntry, taskId: string, priority: number): void {
    releaseSlot(entry, taskId, priority);
  }

  recordRunTime(entry: RunnerEntry, module: string, ms: number): void {
    recordRunTime(entry, module, ms);
  }

  setLostTimer(entry: RunnerEntry, timer: NodeJS.Timeout | null): void {
    if (entry.lostTimer) clearTimeout(entry.lostTimer);
    entry.lostTimer = timer;
  }

  /** Forgets the attempts an expired entry held. */
  clearActive(entry: RunnerEntry): void {
    entry.active.clear();
    entry.perRange.fill(0);
  }
}

/**
 * CPU time per task per process, from /proc: `utime + stime` of each watched process (every thread
 * of it, so worker threads count in their process), and for a process whose children count too, the
 * live descendants' `utime + stime + cutime + cstime` plus its own `cutime + cstime`, which holds the
 * children that exited and were reaped during the measurement. A process counts from the moment it
 * is watched; its descendants from that moment or from their start, whichever is later. This process
 * (the feeder, the BullMQ producer) counts through `process.cpuUsage()`.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { significant } from './measure';

/**
 * The processes on a task's path, named by role so that both systems fill the same columns:
 * `master` taskmaster's master (BullMQ has none); `database` FerretDB / Redis; `workers` taskmaster's
 * runners / BullMQ's worker processes; `children` their child processes; `feeder` this process, which
 * holds the feeder / BullMQ's Queue and QueueEvents.
 */
export const CPU_ROLES = ['master', 'database', 'workers', 'children', 'feeder'] as const;
export type CpuRole = (typeof CPU_ROLES)[number];

/** µs of CPU per task per role, and their sum; a role with no process is left out. */
export type CpuBudget = Partial<Record<CpuRole | 'total', number>>;

let ticksPerSecond: number | undefined;
function clockTicks(): number {
  if (ticksPerSecond === undefined) {
    const n = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim());
    ticksPerSecond = Number.isInteger(n) && n > 0 ? n : 100;
  }
  return ticksPerSecond;
}

interface Stat {
  ppid: number;
  /** utime + stime, in clock ticks. */
  own: number;
  /** cutime + cstime: children it has waited for, in clock ticks. */
  reaped: number;
}

function readStat(pid: number): Stat | undefined {
  let text: string;
  try {
    text = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command name (field 2) may hold spaces and parentheses: count fields after its last ')'.
  // From there, index 0 is field 3 (state), 1 ppid, 11 utime, 12 stime, 13 cutime, 14 cstime.
  const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return { ppid: Number(f[1]), own: Number(f[11]) + Number(f[12]), reaped: Number(f[13]) + Number(f[14]) };
}

/** Every process on the machine by pid (those that end while it is read are left out). */
function processTable(): Map<number, Stat> {
  const table = new Map<number, Stat>();
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const stat = readStat(Number(name));
    if (stat) table.set(Number(name), stat);
  }
  return table;
}

function descendants(root: number, table: Map<number, Stat>): number[] {
  const byParent = new Map<number, number[]>();
  for (const [pid, s] of table) byParent.set(s.ppid, [...(byParent.get(s.ppid) ?? []), pid]);
  const found: number[] = [];
  for (let queue = [root]; queue.length > 0;) {
    const next = byParent.get(queue.pop() as number) ?? [];
    found.push(...next);
    queue.push(...next);
  }
  return found;
}

interface Sample {
  own: number;
  /** undefined unless children are watched. */
  children?: number;
  childCount: number;
}

function sample(pid: number, withChildren: boolean): Sample | undefined {
  if (!withChildren) {
    const s = readStat(pid);
    return s && { own: s.own, childCount: 0 };
  }
  const table = processTable();
  const root = table.get(pid);
  if (!root) return undefined;
  const kids = descendants(pid, table);
  const children = kids.reduce((sum, k) => {
    const s = table.get(k) as Stat;
    return sum + s.own + s.reaped;
  }, root.reaped);
  return { own: root.own, children, childCount: kids.length };
}

interface Watched {
  pid: number;
  role: CpuRole;
  withChildren: boolean;
  start: Sample;
}

/** Counts the CPU of the processes it is told to watch, from then until `perTask` is called. */
export class CpuMeter {
  private readonly feederStart = process.cpuUsage();
  private readonly watched: Watched[] = [];

  /** Counts `pid` under `role` from now; with `withChildren`, its descendants under `children`. */
  watch(pid: number | undefined, role: CpuRole, withChildren = false): void {
    if (pid === undefined) return;
    const start = sample(pid, withChildren);
    if (!start) throw new Error(`cpu: process ${pid} (${role}) is gone before it was watched`);
    this.watched.push({ pid, role, withChildren, start });
  }

  /**
   * µs per task per role since each process was watched, and the child processes alive now. Call it
   * before the watched processes stop: one that is gone cannot be read and fails the measurement.
   */
  perTask(tasks: number): { cpuUsPerTask: CpuBudget; childProcesses?: number } {
    const usPerTick = 1e6 / clockTicks();
    const us: Partial<Record<CpuRole, number>> = {};
    const add = (role: CpuRole, x: number) => (us[role] = (us[role] ?? 0) + x);
    let childProcesses: number | undefined;
    for (const w of this.watched) {
      const end = sample(w.pid, w.withChildren);
      if (!end) throw new Error(`cpu: process ${w.pid} (${w.role}) ended before the measurement did`);
      add(w.role, (end.own - w.start.own) * usPerTick);
      if (w.withChildren) {
        add('children', ((end.children ?? 0) - (w.start.children ?? 0)) * usPerTick);
        childProcesses = (childProcesses ?? 0) + end.childCount;
      }
    }
    const feeder = process.cpuUsage(this.feederStart);
    add('feeder', feeder.user + feeder.system);
    const budget: CpuBudget = {};
    let total = 0;
    for (const role of CPU_ROLES) {
      const x = us[role];
      if (x === undefined) continue;
      budget[role] = significant(x / tasks);
      total += x;
    }
    budget.total = significant(total / tasks);
    return { cpuUsPerTask: budget, ...(childProcesses === undefined ? {} : { childProcesses }) };
  }
}

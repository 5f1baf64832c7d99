/**
 * The processes a worker (or an exec program) started, so they die with it. A task may spawn
 * programs, and those may start daemons of their own; killing only the worker's pid leaves them all
 * running, after a timeout or cancel and after the runner stops.
 *
 * A worker is started in a process group of its own (`detached`), with a tag in its environment
 * ({@link TREE_TAG_VAR}) that everything it starts inherits. Its tree, found on Linux through /proc,
 * is the union of:
 *   - its process group: whatever it started that did not leave the group;
 *   - its descendants by parent pid, while they are still linked: a child that called setsid (e.g.
 *     spawned with `detached: true`) left the group but is still the child of its parent;
 *   - every process whose environment carries its tag: that also finds a detached grandchild whose
 *     parent has exited (it is re-parented, so no parent chain leads to it any more).
 * What escapes: a process that leaves the group (setsid), is re-parented, and was started with an
 * environment that drops the tag (`env: { ... }` without `process.env`), all three. Only a cgroup
 * holds every descendant for sure; the runner does not set one up. Without /proc (macOS) the tree is
 * the process group alone.
 */
import fs from 'node:fs';

/** The environment variable carrying a worker's tag to everything it starts. */
export const TREE_TAG_VAR = 'TASKMASTER_PROCESS_TREE';

interface ProcInfo {
  pid: number;
  ppid: number;
  pgid: number;
}

/**
 * Signals the tree of `root` (which may already have exited): its group, its descendants and every
 * process tagged `tag`. Returns the pids signalled, the root's own included when it is alive.
 */
export function signalTree(root: number, tag: string | undefined, signal: NodeJS.Signals): number[] {
  const pids = treeOf(root, tag);
  const signalled: number[] = [];
  // The group first, in one call: that also reaches members forked while /proc was being read.
  if (trySignal(-root, signal)) signalled.push(root);
  for (const pid of pids) if (pid !== root && trySignal(pid, signal)) signalled.push(pid);
  return signalled;
}

/** The pids in `root`'s tree now (see the module comment), `root` itself excluded. */
export function treeOf(root: number, tag: string | undefined): number[] {
  const procs = readProcs();
  if (!procs) return [];
  const found = new Set<number>();
  const children = new Map<number, number[]>();
  for (const p of procs) {
    if (p.pgid === root) found.add(p.pid);
    const list = children.get(p.ppid);
    if (list) list.push(p.pid);
    else children.set(p.ppid, [p.pid]);
  }
  // Parent links lead from a live root only: once it has exited its pid may be another process's.
  if (procs.some((p) => p.pid === root)) {
    const seen = new Set([root]);
    for (const stack = [root]; stack.length > 0;) {
      for (const c of children.get(stack.pop() as number) ?? []) {
        if (seen.has(c)) continue;
        seen.add(c);
        found.add(c);
        stack.push(c);
      }
    }
  }
  if (tag) {
    const needle = Buffer.from(`${TREE_TAG_VAR}=${tag}\0`);
    for (const p of procs) if (!found.has(p.pid) && hasTag(p.pid, needle)) found.add(p.pid);
  }
  found.delete(root);
  found.delete(process.pid);
  return [...found];
}

function readProcs(): ProcInfo[] | undefined {
  let names: string[];
  try {
    names = fs.readdirSync('/proc');
  } catch {
    return undefined;
  }
  const out: ProcInfo[] = [];
  for (const name of names) {
    if (!/^\d+$/.test(name)) continue;
    let stat: string;
    try {
      stat = fs.readFileSync(`/proc/${name}/stat`, 'utf8');
    } catch {
      continue; // gone meanwhile
    }
    // `pid (comm) state ppid pgrp ...`; comm may hold spaces and parentheses, so read after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    out.push({ pid: Number(name), ppid: Number(fields[1]), pgid: Number(fields[2]) });
  }
  return out;
}

function hasTag(pid: number, needle: Buffer): boolean {
  try {
    const env = fs.readFileSync(`/proc/${pid}/environ`);
    return env.indexOf(needle) === 0 || env.indexOf(Buffer.concat([Buffer.from([0]), needle])) !== -1;
  } catch {
    return false; // another user's process, or gone
  }
}

function trySignal(pid: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(pid, signal);
    return true;
  } catch {
    return false;
  }
}

/**
 * Signals every process whose environment carries `tag` (what a worker thread's tasks started: the
 * thread shares the runner's pid and group, so only the tag finds them). Returns the pids signalled.
 */
export function signalTagged(tag: string, signal: NodeJS.Signals): number[] {
  const procs = readProcs();
  if (!procs) return [];
  const needle = Buffer.from(`${TREE_TAG_VAR}=${tag}\0`);
  const signalled: number[] = [];
  for (const p of procs)
    if (p.pid !== process.pid && hasTag(p.pid, needle) && trySignal(p.pid, signal)) signalled.push(p.pid);
  return signalled;
}

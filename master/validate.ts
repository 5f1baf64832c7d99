/**
 * Validation of a batch, in one place, so the CLI, the library and legacy clients all get the same
 * messages. Input: the raw tasks and a view of the tasks the master already knows. Output: the parsed
 * tasks, or one issue per problem naming the task and field (`tasks[3].dependencies[0]: unknown task
 * id "x"`, cycles as `a -> b -> a`). Nothing is stored unless the whole batch is valid.
 */
import {
  MAX_DEPENDENCIES,
  MAX_PARAMS_DEPTH,
  taskInputSchema,
  type ParsedTaskInput,
} from '../protocol/schemas';
import { formatIssues, issueCount, issueText, type Issue } from '../protocol/issues';

export type { Issue };

/**
 * What the master knows of an id outside the batch: absent means unknown. `existing`: a stored task
 * an add with `onExisting: 'skip'` leaves as it is (the batch's task of that id is not added).
 */
export type Lookup = (id: string) => 'taken' | 'existing' | undefined;

/**
 * The limits checked before anything else, so a refused batch changes nothing: each task's size as
 * JSON (`maxTaskBytes`) and how deep its params nest. The walk keeps its own stack, so a payload
 * nested 100,000 deep is measured without touching the call stack (and stops at the first limit).
 */
export function checkLimits(raw: unknown[], maxTaskBytes: number): Issue[] {
  const issues: Issue[] = [];
  raw.forEach((t, i) => {
    const o = t && typeof t === 'object' ? (t as { params?: unknown; dependencies?: unknown }) : {};
    // Before the ids are looked up in the database: a batch naming 100,000 of them is refused here.
    if (Array.isArray(o.dependencies) && o.dependencies.length > MAX_DEPENDENCIES)
      issues.push({
        path: `tasks[${i}].dependencies`,
        message: `more than ${MAX_DEPENDENCIES} dependencies`,
      });
    else if (o.params !== undefined && depthAbove(o.params, MAX_PARAMS_DEPTH))
      issues.push({ path: `tasks[${i}].params`, message: `nested deeper than ${MAX_PARAMS_DEPTH} levels` });
    else if (jsonBytesAbove(t, maxTaskBytes))
      issues.push({
        path: `tasks[${i}]`,
        message: `larger than the master's --max-task-bytes (${maxTaskBytes} bytes as JSON)`,
      });
  });
  return issues;
}

/** Whether `value` nests more than `max` levels of arrays and objects. */
export function depthAbove(value: unknown, max: number): boolean {
  const stack: [unknown, number][] = [[value, 0]];
  while (stack.length > 0) {
    const [v, depth] = stack.pop() as [unknown, number];
    if (v === null || typeof v !== 'object') continue;
    if (depth + 1 > max) return true;
    for (const child of Object.values(v))
      if (child !== null && typeof child === 'object') stack.push([child, depth + 1]);
  }
  return false;
}

/** Whether `value` as JSON is longer than `max` bytes (escapes aside), without building the text. */
export function jsonBytesAbove(value: unknown, max: number): boolean {
  return countJsonBytes(value, max) > max;
}

/** Size of `value` as JSON, in bytes (as `jsonBytesAbove` counts them). */
export function jsonBytes(value: unknown): number {
  return countJsonBytes(value, Infinity);
}

/** Bytes of `value` as JSON, escapes aside; stops counting once past `stopAbove`. */
function countJsonBytes(value: unknown, stopAbove: number): number {
  let bytes = 0;
  const stack: unknown[] = [value];
  while (stack.length > 0 && bytes <= stopAbove) {
    const v = stack.pop();
    if (typeof v === 'string') bytes += Buffer.byteLength(v) + 2;
    else if (typeof v === 'number' || typeof v === 'boolean') bytes += String(v).length;
    else if (v === null) bytes += 4;
    else if (Array.isArray(v)) {
      bytes += 1 + v.length;
      for (const x of v) stack.push(x);
    } else if (typeof v === 'object') {
      const entries = Object.entries(v as object);
      bytes += 1 + entries.length;
      for (const [k, x] of entries) {
        bytes += Buffer.byteLength(k) + 3;
        stack.push(x);
      }
    }
  }
  return bytes;
}

/** The ids a raw batch gives its own tasks. */
export function collectIds(raw: unknown[]): string[] {
  const ids: string[] = [];
  for (const t of raw) {
    const id = t && typeof t === 'object' ? (t as { id?: unknown }).id : undefined;
    if (typeof id === 'string') ids.push(id);
  }
  return ids;
}

export function collectRefs(raw: unknown[]): string[] {
  const refs = new Set<string>();
  for (const t of raw) {
    if (!t || typeof t !== 'object') continue;
    const o = t as { id?: unknown; dependencies?: unknown };
    if (typeof o.id === 'string') refs.add(o.id);
    if (Array.isArray(o.dependencies)) for (const d of o.dependencies) if (typeof d === 'string') refs.add(d);
  }
  return [...refs];
}

/**
 * Parses and checks a batch. `existing`: the indexes of tasks whose id `known` calls existing; they
 * are left out of the checks of dependencies and cycles (they are not added), and a dependency on
 * their id names the stored task. `omit`: the indexes of tasks that are parsed but not added
 * (deduplicated), each with the id of the task that stands for it; a dependency on an omitted
 * task's id is made a dependency on that task (refused when the id is not known: undefined).
 */
export function validateBatch(
  raw: unknown[],
  known: Lookup,
  omit?: ReadonlyMap<number, string | undefined>,
): { tasks: ParsedTaskInput[]; issues: Issue[]; existing: Set<number> } {
  const issues: Issue[] = [];
  const tasks: ParsedTaskInput[] = [];
  const existing = new Set<number>();
  raw.forEach((t, i) => {
    const r = taskInputSchema.safeParse(t);
    if (!r.success) issues.push(...formatIssues(r.error.issues, `tasks[${i}]`));
    // Checked here rather than by the schema, whose fields other schemas reuse (`omit`, `extend`).
    else if (r.data.runAt !== undefined && r.data.delay !== undefined)
      issues.push({ path: `tasks[${i}].delay`, message: 'give runAt or delay, not both' });
    else tasks[i] = r.data;
  });
  if (issues.length > 0) return { tasks, issues, existing };

  const seen = new Map<string, number>();
  const index = new Map<string, number>();
  tasks.forEach((t, i) => {
    if (t.id === undefined || omit?.has(i)) return;
    const prev = seen.get(t.id);
    const k = prev === undefined ? known(t.id) : undefined;
    if (prev !== undefined)
      issues.push({ path: `tasks[${i}].id`, message: `duplicate id "${t.id}" (also tasks[${prev}])` });
    else if (k === 'taken') issues.push({ path: `tasks[${i}].id`, message: `id "${t.id}" is already taken` });
    else if (k === 'existing') existing.add(i);
    else index.set(t.id, i);
    seen.set(t.id, i);
  });
  const aliases = omit && omit.size > 0 ? aliasesOf(tasks, omit, index) : undefined;
  tasks.forEach((t, i) => {
    if (existing.has(i) || omit?.has(i)) return;
    t.dependencies.forEach((d, k) => {
      if (index.has(d) || known(d)) return;
      if (!aliases?.has(d))
        return void issues.push({
          path: `tasks[${i}].dependencies[${k}]`,
          message: `unknown task id "${d}"`,
        });
      const to = aliases.get(d);
      if (to !== undefined) t.dependencies[k] = to;
      else
        issues.push({
          path: `tasks[${i}].dependencies[${k}]`,
          message: `task "${d}" was deduplicated to a task of this batch that has no id: give that task an id`,
        });
    });
  });
  if (issues.length > 0) return { tasks, issues, existing };

  const cycle = findCycle(tasks, index);
  if (cycle) {
    const at = index.get(cycle[0]) ?? 0;
    issues.push({ path: `tasks[${at}].dependencies`, message: `dependency cycle: ${cycle.join(' -> ')}` });
  }
  return { tasks, issues, existing };
}

/** The ids of omitted tasks that no task of the batch takes, each with the id standing for it. */
function aliasesOf(
  tasks: ParsedTaskInput[],
  omit: ReadonlyMap<number, string | undefined>,
  index: Map<string, number>,
): Map<string, string | undefined> {
  const aliases = new Map<string, string | undefined>();
  for (const [i, to] of omit) {
    const id = tasks[i].id;
    if (id !== undefined && !index.has(id) && !aliases.has(id)) aliases.set(id, to);
  }
  return aliases;
}

/**
 * Depth-first search over the batch's own edges (stored tasks cannot depend on new ones), with an
 * explicit stack: a long dependency chain must not overflow the call stack.
 */
function findCycle(tasks: ParsedTaskInput[], index: Map<string, number>): string[] | null {
  const color = new Map<string, 1 | 2>(); // 1: on the path, 2: finished
  for (const root of index.keys()) {
    if (color.has(root)) continue;
    const path: string[] = [root];
    const next: number[] = [0]; // per path entry: which dependency to look at next
    color.set(root, 1);
    while (path.length > 0) {
      const id = path[path.length - 1];
      const deps = tasks[index.get(id) as number].dependencies;
      const k = next[next.length - 1]++;
      if (k >= deps.length) {
        color.set(id, 2);
        path.pop();
        next.pop();
        continue;
      }
      const d = deps[k];
      if (!index.has(d)) continue;
      const c = color.get(d);
      if (c === 1) return [...path.slice(path.indexOf(d)), d];
      if (c === undefined) {
        color.set(d, 1);
        path.push(d);
        next.push(0);
      }
    }
  }
  return null;
}

/**
 * The message of an EVALIDATION refusal: what was refused (a batch, or an event's payload), then the
 * first 20 issues on one line (all are in `details`).
 */
export function summarize(issues: Issue[], what = 'batch'): string {
  return `invalid ${what} (${issueCount(issues)}): ${issueText(issues, { limit: 20 })}`;
}

/**
 * Validation issues, as every role reports them: `path: reason`, the path written the way the payload
 * is (`tasks[3].dependencies[0]`). `formatIssues` turns zod's issues into these; `issueText` is the one
 * rendering of a list, used by the master's refusals, the HTTP API, the feeder's errors and the
 * settings check, which differ only in the headline they put before it.
 */
import type { z } from 'zod';

export interface Issue {
  path: string;
  message: string;
}

/** zod's issues as `{ path, message }`, each path under `prefix` (e.g. `tasks[3]`). */
export function formatIssues(issues: readonly z.core.$ZodIssue[], prefix = ''): Issue[] {
  return issues.map((i) => ({ path: joinPath(prefix, i.path), message: i.message }));
}

function joinPath(prefix: string, path: readonly PropertyKey[]): string {
  let out = prefix;
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : out ? `.${String(p)}` : String(p);
  return out || '(root)';
}

export interface IssueTextOptions {
  /** One issue per line, indented by two spaces (for a terminal); default: one line, `; ` between. */
  lines?: boolean;
  /** Issues shown; the rest are counted (`… and 5 more`). Default: all. */
  limit?: number;
}

/** `path: message` for each issue. */
export function issueText(issues: readonly Issue[], opts: IssueTextOptions = {}): string {
  const limit = opts.limit ?? issues.length;
  const shown = issues.slice(0, limit).map((i) => `${i.path}: ${i.message}`);
  if (issues.length > limit) shown.push(`… and ${issues.length - limit} more`);
  return opts.lines ? shown.map((s) => `  ${s}`).join('\n') : shown.join('; ');
}

/** `3 issues`, `1 issue`. */
export function issueCount(issues: readonly Issue[]): string {
  return `${issues.length} issue${issues.length === 1 ? '' : 's'}`;
}

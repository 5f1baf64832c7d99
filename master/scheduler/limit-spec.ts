/**
 * Rate limits and concurrency caps as an operator writes them (`--limit SELECTOR=SPEC`, the body of
 * `PUT /api/limits/SELECTOR`), parsed in one place so the flag, `new Master({ limits })` and the API
 * refuse the same mistakes with the same words.
 *
 *   module:resize=20/s               no more than 20 starts of `resize` in any second
 *   group:acme=100/1m, 5 concurrent  both, for the tasks of group `acme`
 *   group:*=2 concurrent             each group on its own: 2 of its tasks at a time
 *
 * A selector names tasks by `module:NAME`, `group:NAME`, or `group:*` (every group, each counted
 * separately). A spec is `N/DURATION` (no more than N starts in any window of that length, counted
 * across every runner), `N concurrent` (no more than N assigned or running at once), or both, comma
 * separated; `none` is no limit (it overrides a `--limit` of the same selector). Pure: no I/O.
 */

/** What a selector matches: one module, one group, or every group on its own (`name` null). */
export interface Selector {
  kind: 'module' | 'group';
  /** null: `group:*`. */
  name: string | null;
}

export interface LimitSpec {
  /** No more than `n` starts in any window of `windowMs`. */
  rate?: { n: number; windowMs: number };
  /** No more than this many assigned or running at once. */
  concurrent?: number;
}

/** One selector's limit: its spec, written as the operator wrote it and as parsed. */
export interface LimitRule {
  selector: string;
  spec: string;
  limit: LimitSpec;
}

export const MAX_LIMIT_N = 1_000_000;
/** Windows from 1 ms to a day: a longer one would hold a day's start times in memory. */
export const MAX_WINDOW_MS = 86_400_000;
export const MAX_SELECTOR_CHARS = 300;

const UNITS: Readonly<Record<string, number>> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** The result of a parse: the value, or what is wrong, in words that name the part at fault. */
export type Parsed<T> = { ok: true; value: T } | { ok: false; message: string };

const fail = (message: string): { ok: false; message: string } => ({ ok: false, message });

export function parseSelector(text: string): Parsed<Selector> {
  const s = text.trim();
  const m = /^(module|group):(.+)$/.exec(s);
  if (!m) return fail(`selector "${s}" must be module:NAME, group:NAME or group:* (e.g. module:resize)`);
  if (s.length > MAX_SELECTOR_CHARS) return fail(`selector is longer than ${MAX_SELECTOR_CHARS} characters`);
  const kind = m[1] as 'module' | 'group';
  const name = m[2];
  if (name === '*') {
    if (kind === 'module') return fail('selector "module:*" is not allowed: limit modules one by one');
    return { ok: true, value: { kind, name: null } };
  }
  if (name.trim() !== name) return fail(`selector "${s}": the name has spaces around it`);
  return { ok: true, value: { kind, name } };
}

export function parseSpec(text: string): Parsed<LimitSpec> {
  const s = text.trim();
  if (s === '') return fail('the limit is empty: give N/DURATION (e.g. 20/s), N concurrent, or both');
  if (s === 'none') return { ok: true, value: {} };
  const out: LimitSpec = {};
  for (const raw of s.split(',')) {
    const part = raw.trim();
    const rate = /^(\d+)\s*\/\s*(\d*)\s*(ms|s|m|h|d)$/.exec(part);
    const conc = /^(\d+)\s+concurrent$/.exec(part);
    if (rate) {
      if (out.rate) return fail(`"${s}" gives a rate twice`);
      const n = Number(rate[1]);
      const windowMs = (rate[2] === '' ? 1 : Number(rate[2])) * UNITS[rate[3]];
      if (n < 1 || n > MAX_LIMIT_N) return fail(`"${part}": the count must be from 1 to ${MAX_LIMIT_N}`);
      if (windowMs < 1 || windowMs > MAX_WINDOW_MS)
        return fail(`"${part}": the window must be from 1ms to 1d`);
      out.rate = { n, windowMs };
    } else if (conc) {
      if (out.concurrent !== undefined) return fail(`"${s}" gives a concurrency twice`);
      const n = Number(conc[1]);
      if (n < 1 || n > MAX_LIMIT_N) return fail(`"${part}": the count must be from 1 to ${MAX_LIMIT_N}`);
      out.concurrent = n;
    } else if (/^\d+\s*\/\s*\d*\s*[a-z]*$/i.test(part))
      return fail(
        `"${part}": the duration must be a number and a unit: ms, s, m, h or d (e.g. 20/s, 100/1m)`,
      );
    else
      return fail(
        `"${part}" is not a limit: give N/DURATION (e.g. 20/s, 100/1m), N concurrent, both comma separated, or none`,
      );
  }
  return { ok: true, value: out };
}

/** `SELECTOR=SPEC`, as `--limit` takes it. */
export function parseLimit(text: string): Parsed<LimitRule> {
  const at = text.indexOf('=');
  if (at < 0) return fail(`"${text}" has no "=": give SELECTOR=SPEC, e.g. module:resize=20/s`);
  const selector = parseSelector(text.slice(0, at));
  if (!selector.ok) return selector;
  const spec = parseSpec(text.slice(at + 1));
  if (!spec.ok) return spec;
  return {
    ok: true,
    value: { selector: text.slice(0, at).trim(), spec: text.slice(at + 1).trim(), limit: spec.value },
  };
}

/**
 * The `--limit` values as rules, one per selector: two values for one selector merge when they
 * limit different things (a rate and a concurrency) and are refused when they limit the same one.
 */
export function limitRules(
  texts: readonly string[],
): { ok: true; value: Map<string, LimitRule> } | { ok: false; message: string; index: number } {
  const out = new Map<string, LimitRule>();
  for (const [i, text] of texts.entries()) {
    const r = parseLimit(text);
    if (!r.ok) return { ...r, index: i };
    const prev = out.get(r.value.selector);
    if (!prev) {
      out.set(r.value.selector, r.value);
      continue;
    }
    const a = prev.limit;
    const b = r.value.limit;
    if ((a.rate && b.rate) || (a.concurrent !== undefined && b.concurrent !== undefined))
      return {
        ok: false,
        index: i,
        message: `"${r.value.selector}" is limited twice the same way ("${prev.spec}" and "${r.value.spec}")`,
      };
    out.set(r.value.selector, {
      selector: r.value.selector,
      spec: `${prev.spec}, ${r.value.spec}`,
      limit: { ...a, ...b },
    });
  }
  return { ok: true, value: out };
}

/** Whether a spec limits anything (`none` does not). */
export function limits(spec: LimitSpec): boolean {
  return spec.rate !== undefined || spec.concurrent !== undefined;
}

/**
 * How user values (params, results, error details, `requires`) are stored so that no database can
 * refuse them and they read back unchanged.
 *
 * A value is stored as it is when every server takes it: plain objects and arrays, no array directly
 * inside an array (FerretDB 1.24 refuses nested arrays), no key that starts with `$`, holds a `.` or
 * a NUL, is empty, or is `__proto__`, and no deeper than `MAX_NATIVE_DEPTH`. Anything else is stored
 * whole as `{ __json: "<JSON text>" }`, so a MongoDB user still reads ordinary values as documents.
 * A user object that has a `__json` key of its own is wrapped too, so decoding is never ambiguous.
 *
 * The walk is iterative, so a value nested 100,000 deep costs a loop, not the stack. A value that
 * JSON cannot write (too deep for `JSON.stringify`) raises `UnstorableValueError`, which the store
 * turns into a refusal of that one task.
 */
const TAG = '__json';
/** Nesting kept native; deeper values are stored as JSON text. */
export const MAX_NATIVE_DEPTH = 32;

export class UnstorableValueError extends Error {
  constructor(reason: string) {
    super(`value cannot be stored: ${reason}`);
    this.name = 'UnstorableValueError';
  }
}

export function encodeValue(v: unknown): unknown {
  if (storableAsIs(v)) return v;
  let text: string | undefined;
  try {
    text = JSON.stringify(v);
  } catch (err) {
    throw new UnstorableValueError(err instanceof Error ? err.message : String(err));
  }
  return { [TAG]: text ?? 'null' };
}

export function decodeValue(v: unknown): unknown {
  if (v && typeof v === 'object' && !Array.isArray(v)) {
    const o = v as Record<string, unknown>;
    const keys = Object.keys(o);
    if (keys.length === 1 && keys[0] === TAG && typeof o[TAG] === 'string')
      return JSON.parse(o[TAG]) as unknown;
    // Values written before whole-value wrapping could hold a wrapped part anywhere inside.
    if (keys.some((k) => o[k] && typeof o[k] === 'object')) {
      const out: Record<string, unknown> = {};
      for (const k of keys) out[k] = decodeValue(o[k]);
      return out;
    }
    return v;
  }
  if (Array.isArray(v) && v.some((x) => x && typeof x === 'object')) return v.map(decodeValue);
  return v;
}

/** Whether every server stores `v` natively and reads it back equal. */
export function storableAsIs(v: unknown): boolean {
  if (v === null || typeof v !== 'object') return typeof v !== 'bigint' && typeof v !== 'function';
  const stack: [unknown, number][] = [[v, 1]];
  while (stack.length > 0) {
    const [x, depth] = stack.pop() as [unknown, number];
    if (depth > MAX_NATIVE_DEPTH) return false;
    if (Array.isArray(x)) {
      for (const e of x) {
        if (Array.isArray(e)) return false;
        if (e !== null && typeof e === 'object') stack.push([e, depth + 1]);
        else if (!scalarOk(e)) return false;
      }
      continue;
    }
    const proto = Object.getPrototypeOf(x) as unknown;
    if (proto !== Object.prototype && proto !== null) return false;
    for (const k of Object.keys(x as object)) {
      if (k === '' || k === TAG || k === '__proto__' || k[0] === '$' || k.includes('.') || k.includes('\0'))
        return false;
      const e = (x as Record<string, unknown>)[k];
      if (e !== null && typeof e === 'object') stack.push([e, depth + 1]);
      else if (!scalarOk(e)) return false;
    }
  }
  return true;
}

function scalarOk(e: unknown): boolean {
  // undefined would be dropped or turned into null; NaN and Infinity have no JSON form to compare with.
  if (e === undefined || typeof e === 'bigint' || typeof e === 'function' || typeof e === 'symbol')
    return false;
  return typeof e !== 'number' || Number.isFinite(e);
}

/**
 * FerretDB 1.24 refuses documents that hold an array directly inside an array ("nested arrays are
 * not supported"), and task params and results often do (`[["AAPL", "MSFT"]]`). Such an array is
 * stored as `{ __json: "<JSON text>" }` — on every server, so documents have one shape whatever the
 * backend — and turned back on reading. Everything else is stored as it is.
 */
const TAG = '__json';

export function encodeValue(v: unknown): unknown {
  if (Array.isArray(v)) {
    if (v.some((x) => Array.isArray(x))) return { [TAG]: JSON.stringify(v) };
    return v.some(needsWork) ? v.map(encodeValue) : v;
  }
  if (v && typeof v === 'object' && v.constructor === Object) {
    if (!Object.values(v).some(needsWork)) return v;
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) out[k] = encodeValue(x);
    return out;
  }
  return v;
}

export function decodeValue(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(decodeValue);
  if (v && typeof v === 'object' && v.constructor === Object) {
    const o = v as Record<string, unknown>;
    const keys = Object.keys(o);
    if (keys.length === 1 && keys[0] === TAG && typeof o[TAG] === 'string')
      return JSON.parse(o[TAG]) as unknown;
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(o)) out[k] = decodeValue(x);
    return out;
  }
  return v;
}

/** Whether a nested array hides anywhere inside `v`. */
function needsWork(v: unknown): boolean {
  if (Array.isArray(v)) return v.some((x) => Array.isArray(x) || needsWork(x));
  return !!v && typeof v === 'object' && v.constructor === Object && Object.values(v).some(needsWork);
}

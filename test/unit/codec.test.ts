import { decodeValue, encodeValue, MAX_NATIVE_DEPTH, UnstorableValueError } from '../../models/codec';

describe('stored value codec', () => {
  test('an array holding an array is stored as JSON text and read back unchanged', () => {
    const v = [['AAPL', 'MSFT'], { deep: [[1, 2], [3]] }];
    const stored = encodeValue(v);
    expect(stored).toEqual({ __json: JSON.stringify(v) });
    expect(decodeValue(stored)).toEqual(v);
  });

  test('values every server stores are left as they are', () => {
    const flat = { a: 1, b: ['x', { y: [1, 2] }], c: null, d: { e: 'f' } };
    expect(encodeValue(flat)).toBe(flat);
    expect(encodeValue('text')).toBe('text');
    expect(encodeValue(null)).toBe(null);
  });

  test.each([
    ['a dotted key', { 'report.pdf': 1 }],
    ['a $ key', { $where: 'x', a: { $gt: 1 } }],
    ['a key deep inside', [{ ok: { 'a.b': 1 } }]],
    ['__proto__ as an own key', JSON.parse('{"__proto__": {"polluted": true}, "x": 1}') as unknown],
    ['an empty key', { '': 1 }],
    ['a NUL in a key', { 'a\u0000b': 1 }],
    ['a value of its own that looks like the wrapper', { __json: '[1]' }],
    ['nesting past the native depth', nest(MAX_NATIVE_DEPTH + 5)],
  ])('%s is stored as JSON text and read back unchanged', (_name, v) => {
    const stored = encodeValue(v);
    expect(Object.keys(stored as object)).toEqual(['__json']);
    expect(decodeValue(stored)).toEqual(v);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  test('a value too deep for JSON raises UnstorableValueError, without overflowing the stack of the check', () => {
    expect(() => encodeValue(nest(200_000))).toThrow(UnstorableValueError);
  });

  test('documents written before whole-value wrapping still decode', () => {
    expect(decodeValue({ tickers: ['A'], matrix: { __json: '[[1],[2]]' } })).toEqual({
      tickers: ['A'],
      matrix: [[1], [2]],
    });
  });
});

function nest(depth: number): unknown {
  let v: unknown = { leaf: true };
  for (let i = 0; i < depth; i++) v = { n: v };
  return v;
}

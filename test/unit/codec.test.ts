import { decodeValue, encodeValue } from '../../models/codec';

describe('stored value codec (nested arrays)', () => {
  test('an array holding an array is stored as JSON text and read back unchanged', () => {
    const v = [['AAPL', 'MSFT'], { deep: [[1, 2], [3]] }];
    const stored = encodeValue(v);
    expect(stored).toEqual({ __json: JSON.stringify(v) });
    expect(decodeValue(stored)).toEqual(v);
  });

  test('nested arrays inside objects are encoded where they are; flat values are left as they are', () => {
    const v = { tickers: ['A', 'B'], matrix: [[1], [2]], n: 1 };
    const stored = encodeValue(v) as Record<string, unknown>;
    expect(stored.tickers).toEqual(['A', 'B']);
    expect(stored.matrix).toEqual({ __json: '[[1],[2]]' });
    expect(decodeValue(stored)).toEqual(v);
    const flat = { a: 1, b: ['x'], c: null };
    expect(encodeValue(flat)).toBe(flat);
    expect(encodeValue('text')).toBe('text');
  });
});

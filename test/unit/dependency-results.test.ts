import { jsonBytes, packResults } from '../../master/scheduler/dependency-results';

describe("packing dependencies' results", () => {
  const results = new Map<string, unknown>([
    ['small', 1],
    ['mid', 'x'.repeat(40)],
    ['big', 'y'.repeat(200)],
  ]);
  const lookup = (id: string) =>
    results.has(id) ? { result: results.get(id), bytes: jsonBytes(results.get(id)) } : undefined;

  test('in the order named, once each, until maxBytes: the rest is left out with its size', () => {
    expect(packResults(['mid', 'small', 'mid', 'big', 'small'], lookup, 100)).toEqual({
      dependencies: [
        { id: 'mid', result: 'x'.repeat(40) },
        { id: 'small', result: 1 },
        { id: 'big', leftOut: 202 },
      ],
      bytes: 43,
      leftOut: true,
    });
  });

  test('a result too large on its own leaves room for the ones after it; one not found is left out with 0', () => {
    expect(packResults(['big', 'gone', 'small'], lookup, 50)).toEqual({
      dependencies: [
        { id: 'big', leftOut: 202 },
        { id: 'gone', leftOut: 0 },
        { id: 'small', result: 1 },
      ],
      bytes: 1,
      leftOut: true,
    });
    expect(packResults(['small'], lookup, 0)).toMatchObject({ dependencies: [{ id: 'small', leftOut: 1 }] });
  });
});

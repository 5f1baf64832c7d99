import { validateBatch } from '../../master/validate';

describe('batch validation', () => {
  test('a 50,000-task dependency chain, listed from its end, is accepted (no recursion limit)', () => {
    const n = 50_000;
    const tasks = Array.from({ length: n }, (_, i) => ({
      id: `c${i}`,
      module: 'ok',
      dependencies: i > 0 ? [`c${i - 1}`] : [],
    })).reverse();
    expect(validateBatch(tasks, () => undefined).issues).toEqual([]);
  });

  test('a cycle at the end of a long chain is reported as its path', () => {
    const tasks = Array.from({ length: 1000 }, (_, i) => ({
      id: `c${i}`,
      module: 'ok',
      dependencies: i > 0 ? [`c${i - 1}`] : ['c999'],
    }));
    const { issues } = validateBatch(tasks, () => undefined);
    expect(issues).toHaveLength(1);
    expect(issues[0].message).toMatch(/^dependency cycle: c0 -> c999 -> c998 .* -> c1 -> c0$/);
  });
});

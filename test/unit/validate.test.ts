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

  test('a dependency on a deduplicated task names the task it was deduplicated to; omitted tasks are not id-checked', () => {
    const tasks = [
      { id: 'a', module: 'ok', dedup: { key: 'k' } },
      { id: 'taken', module: 'ok', dedup: { key: 'k' } },
      { id: 'c', module: 'ok', dependencies: ['taken', 'held'] },
      { id: 'held', module: 'ok', dedup: { key: 'j' } },
    ];
    const omit = new Map([
      [1, 'a'],
      [3, 'stored-holder'],
    ]);
    const known = (id: string) => (id === 'taken' ? ('taken' as const) : undefined);
    const r = validateBatch(tasks, known, omit);
    // `taken` is a stored id, and a dependency on it names the stored task.
    expect(r.issues).toEqual([]);
    expect(r.tasks[2].dependencies).toEqual(['taken', 'stored-holder']);
  });

  test('a dependency on a task deduplicated to a task of the batch without an id is refused, saying why', () => {
    const tasks = [
      { module: 'ok', dedup: { key: 'k' } },
      { id: 'b', module: 'ok', dedup: { key: 'k' } },
      { id: 'c', module: 'ok', dependencies: ['b'] },
    ];
    const { issues } = validateBatch(tasks, () => undefined, new Map([[1, undefined]]));
    expect(issues).toEqual([
      {
        path: 'tasks[2].dependencies[0]',
        message: 'task "b" was deduplicated to a task of this batch that has no id: give that task an id',
      },
    ]);
  });

  test('a dedup key is bounded and a ttl must be a positive integer', () => {
    const { issues } = validateBatch(
      [
        { module: 'ok', dedup: { key: 'k'.repeat(501) } },
        { module: 'ok', dedup: { key: 'k', ttl: 0 } },
        { module: 'ok', dedup: { key: '' } },
        { module: 'ok', dedup: { key: 'k', other: 1 } },
      ],
      () => undefined,
    );
    expect(issues.map((i) => i.path)).toEqual([
      'tasks[0].dedup.key',
      'tasks[1].dedup.ttl',
      'tasks[2].dedup.key',
      'tasks[3].dedup',
    ]);
  });
});

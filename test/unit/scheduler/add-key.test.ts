/**
 * What an add with an addKey is, given what is known of its ids (master/scheduler/add-key.ts): a
 * retry of a stored add (answered as it was), an add partly stored under its key (refused), or not a
 * retry at all (null: the ordinary rules apply).
 */
import { replayOf, type KnownTask } from '../../../master/scheduler/add-key';

const known =
  (tasks: Record<string, KnownTask>) =>
  (id: string): KnownTask | undefined =>
    tasks[id];

describe('replayOf', () => {
  const stored = known({
    a: { state: 'done', batch: 'first', addKey: 'K' },
    b: { state: 'running', batch: 'first', addKey: 'K' },
    other: { state: 'failed', batch: 'elsewhere', addKey: 'L' },
    plain: { state: 'ready', batch: 'elsewhere' },
  });
  const task = (id?: string) => ({ ...(id ? { id } : {}), module: 'm' });

  test('every task stored under the key: the first answer, batch and refs in input order', () => {
    expect(replayOf([task('b'), task('a')], 'K', 'error', stored)).toEqual({
      ok: true,
      batch: 'first',
      tasks: [
        { id: 'b', _id: 'b' },
        { id: 'a', _id: 'a' },
      ],
    });
  });

  test("with skip, tasks of other adds are existing, as the first add's answer had them", () => {
    expect(replayOf([task('other'), task('a'), task('plain')], 'K', 'skip', stored)).toEqual({
      ok: true,
      batch: 'first',
      tasks: [
        { id: 'other', _id: 'other', existing: { state: 'failed', batch: 'elsewhere' } },
        { id: 'a', _id: 'a' },
        { id: 'plain', _id: 'plain', existing: { state: 'ready', batch: 'elsewhere' } },
      ],
    });
  });

  test('without skip, a task of another add leaves the ordinary refusal to say so', () => {
    expect(replayOf([task('a'), task('other')], 'K', 'error', stored)).toBeNull();
  });

  test('no task stored under the key: not a retry', () => {
    expect(replayOf([task('other'), task('plain'), task('new')], 'K', 'skip', stored)).toBeNull();
    expect(replayOf([task('a')], 'M', 'error', stored)).toBeNull();
  });

  test('some tasks under the key and others missing: refused, naming the first missing one', () => {
    const reply = replayOf([task('a'), task('new'), task()], 'K', 'error', stored);
    expect(reply).toMatchObject({
      ok: false,
      error: {
        code: 'EVALIDATION',
        details: {
          issues: [
            {
              path: 'tasks[1].id',
              message:
                'the add with addKey "K" is partly stored: task "a" exists with this key, task "new" does not',
            },
          ],
        },
      },
    });
    // A task without an id can never be found again.
    expect(replayOf([task('a'), task()], 'K', 'skip', stored)).toMatchObject({
      ok: false,
      error: {
        details: { issues: [{ path: 'tasks[1]', message: expect.stringContaining('this task has no id') }] },
      },
    });
  });

  test('a task deduplicated to the holder of its key is answered as deduplicated again, not as partly stored', () => {
    const holder = { id: 'y', _id: 'y', deduplicated: { state: 'running' as const, batch: 'elsewhere' } };
    const raw = [task('a'), { ...task('x'), dedup: { key: 'k' } }];
    expect(replayOf(raw, 'K', 'error', stored, new Map([[1, { holder }]]))).toEqual({
      ok: true,
      batch: 'first',
      tasks: [{ id: 'a', _id: 'a' }, holder],
    });
    // Without the key taken, `x` is missing: not a retry of a stored add.
    expect(replayOf(raw, 'K', 'error', stored)).toMatchObject({ ok: false, error: { code: 'EVALIDATION' } });
  });
});

/**
 * The dedup key index (master/scheduler/dedup.ts): which items of an add find their key taken, by a
 * task or by an earlier item of the same add; when a key is free again; what a final task inside its
 * ttl keeps. The timer that ends a ttl is exercised against a real master in
 * test/integration/dedup.test.ts.
 */
import { DedupIndex } from '../../../master/scheduler/dedup';
import { newTaskRecord, type Dedup, type TaskRecord } from '../../../master/task-record';
import type { TaskState } from '../../../protocol/states';

const record = (id: string, dedup: Dedup | null, state: TaskState = 'ready'): TaskRecord =>
  newTaskRecord({ id, module: 'm', batch: 'b1', created: 0, state, maxAttempts: 3, dedup });
const item = (key?: string) => ({ module: 'm', ...(key === undefined ? {} : { dedup: { key } }) });

describe('DedupIndex', () => {
  let index: DedupIndex;
  beforeEach(() => (index = new DedupIndex()));
  afterEach(() => index.close());

  test('an add without keys finds nothing, and allocates no result', () => {
    index.hold(record('a', { key: 'k' }), 0);
    expect(index.match([item(), item()], 0)).toBeNull();
  });

  test('items whose key a task holds name it; a later item with the key of an earlier one names that item', () => {
    index.hold(record('a', { key: 'k' }), 0);
    const hits = index.match([item('new'), item('k'), item('new'), item('other'), item('new')], 0);
    expect(hits).toEqual(
      new Map([
        [1, { holder: { id: 'a', _id: 'a', deduplicated: { state: 'ready', batch: 'b1' } } }],
        [2, { first: 0 }],
        [4, { first: 0 }],
      ]),
    );
  });

  test('a malformed or too long key is left to validation', () => {
    index.hold(record('a', { key: 'k' }), 0);
    expect(index.match([{ dedup: 'k' }, { dedup: { key: 1 } }, item('k'.repeat(501))], 0)).toBeNull();
  });

  test('without a ttl the key is free once its task is final, and leaves the index', () => {
    const t = record('a', { key: 'k' });
    index.hold(t, 0);
    t.state = 'done';
    index.finished(t, 10);
    expect(index.size).toBe(0);
    expect(index.match([item('k')], 10)).toBeNull();
  });

  test('with a ttl the final task keeps the key (not its record) until its time, never after', () => {
    const t = record('a', { key: 'k', until: 1000 });
    index.hold(t, 0);
    t.state = 'done';
    index.finished(t, 10);
    const kept = index.holderOf('k', 999);
    expect(kept).not.toBe(t);
    expect(kept).toMatchObject({ id: 'a', state: 'done', batch: 'b1', until: 1000 });
    expect(Object.keys(kept as object).sort()).toEqual(['batch', 'id', 'state', 'until']);
    expect(index.holderOf('k', 1000)).toBeUndefined();
    expect(index.size).toBe(0);
  });

  test('a task whose add was refused frees its key; another task of the key is left alone', () => {
    const t = record('a', { key: 'k' });
    index.hold(t, 0);
    index.dropped(record('b', { key: 'k' }));
    expect(index.holderOf('k', 0)).toBe(t);
    index.dropped(t);
    expect(index.size).toBe(0);
  });

  test('recovered final tasks keep their keys until their time; purging the task frees it', () => {
    index.recovered({ id: 'a', batch: 'b1', state: 'failed', dedup: { key: 'k', until: 5000 } }, 0);
    index.recovered({ id: 'b', batch: 'b1', state: 'done', dedup: { key: 'past', until: 5 } }, 10);
    index.recovered({ id: 'c', batch: 'b1', state: 'done', dedup: { key: 'no-ttl' } }, 10);
    expect(index.size).toBe(1);
    expect(index.holderOf('k', 10)).toMatchObject({ id: 'a', state: 'failed' });
    index.forget(['x', 'a']);
    expect(index.size).toBe(0);
  });

  test('a retried task takes its key back only if no other task took it meanwhile', () => {
    const first = record('a', { key: 'k', until: 1000 }, 'failed');
    index.hold(first, 0);
    index.finished(first, 10);
    // The operator's retry of the same task: it holds its key again.
    const revived = record('a', { key: 'k', until: 1000 });
    index.hold(revived, 20);
    expect(index.holderOf('k', 20)).toBe(revived);
    // Another task took the key after it was free: a retry of the old one leaves it.
    const other = record('b', { key: 'k' });
    revived.state = 'done';
    index.finished(revived, 2000);
    index.hold(other, 2000);
    index.hold(record('a', { key: 'k', until: 1000 }), 2100);
    expect(index.holderOf('k', 2100)).toBe(other);
  });
});

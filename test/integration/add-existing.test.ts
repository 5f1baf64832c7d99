/**
 * An add naming ids already stored, against a real master: by default it is refused whole, naming the
 * id; with `onExisting: 'skip'` the stored tasks are returned as `existing` and their outcomes awaited,
 * and the rest is added — whether the stored task is live, final in memory, or only in the database.
 */
import { startFeeder } from '../helpers/clients';
import { waitForEvent } from '../helpers/wait';
import { useCluster } from '../helpers/use-cluster';

describe('adding ids that are already stored', () => {
  const c = useCluster({ runners: [{ runnerId: 'existing-r', workers: 2, slots: 4 }] });

  test("a fresh Feeder re-adding a batch with onExisting 'skip' gets the stored outcomes and adds the new tasks", async () => {
    const first = await startFeeder(c.url);
    const before = await first.work(
      [
        { id: 'order-1', module: 'ok', params: [1] },
        { id: 'order-2', module: 'ok', params: [2] },
      ],
      { batch: 'orders' },
    );
    await first.close();
    expect(before.map((o) => o.state)).toEqual(['done', 'done']);

    const fresh = await startFeeder(c.url);
    try {
      const again = [
        { id: 'order-1', module: 'ok', params: [1] },
        { id: 'order-3', module: 'ok', params: [3] },
        { id: 'order-2', module: 'ok', params: [2] },
      ];
      const refs = await fresh.add(again, { onExisting: 'skip', batch: 'orders-again' });
      expect(refs).toEqual([
        { id: 'order-1', _id: 'order-1', existing: { state: 'done', batch: 'orders' } },
        { id: 'order-3', _id: 'order-3' },
        { id: 'order-2', _id: 'order-2', existing: { state: 'done', batch: 'orders' } },
      ]);
      const outcomes = await fresh.work(again);
      expect(outcomes.map((o) => [o.id, o.state, o.result, o.batch])).toEqual([
        ['order-1', 'done', [1], 'orders'],
        ['order-3', 'done', [3], 'orders-again'],
        ['order-2', 'done', [2], 'orders'],
      ]);
    } finally {
      await fresh.close();
    }
  });

  test('by default an add naming a stored id is refused whole, naming the id, and stores nothing', async () => {
    const fresh = await startFeeder(c.url);
    try {
      await expect(
        fresh.add([
          { id: 'brand-new', module: 'ok' },
          { id: 'order-1', module: 'ok', params: [1] },
        ]),
      ).rejects.toMatchObject({
        code: 'EVALIDATION',
        message: expect.stringContaining('tasks[1].id: id "order-1" is already taken'),
      });
      expect(c.master.scheduler.tasks.has('brand-new')).toBe(false);
      expect(c.master.scheduler.finals.has('brand-new')).toBe(false);
    } finally {
      await fresh.close();
    }
  });

  test('a live existing task: skip answers with its state now, and work() gives its outcome once it is final', async () => {
    const first = await startFeeder(c.url);
    const fresh = await startFeeder(c.url);
    try {
      const started = waitForEvent(c.runner, 'started', (ref: { id: string }) => ref.id === 'slow-1');
      await first.add([{ id: 'slow-1', module: 'timed', params: [300, 'first'] }], { batch: 'slow' });
      await started;
      // The new definition differs: skip does not compare, the running task is the one awaited.
      const again = [
        { id: 'slow-1', module: 'ok', params: ['second'] },
        { module: 'ok', params: ['new'] },
      ];
      const refs = await fresh.add(again, { onExisting: 'skip' });
      expect(refs[0].existing).toEqual({
        state: expect.stringMatching(/^(assigned|running)$/),
        batch: 'slow',
      });
      const outcomes = await fresh.work(again);
      expect(outcomes.map((o) => [o.state, o.attempts])).toEqual([
        ['done', 1],
        ['done', 1],
      ]);
      expect(outcomes[0].result).toMatchObject({ label: 'first' });
      expect(outcomes[1].result).toEqual(['new']);
    } finally {
      await first.close();
      await fresh.close();
    }
  });

  test('a dependency in the same add on a skipped id is a dependency on the stored task', async () => {
    const fresh = await startFeeder(c.url);
    try {
      const outcomes = await fresh.work(
        [
          { id: 'order-1', module: 'ok', params: [1] },
          { id: 'after-order-1', module: 'ok', params: ['after'], dependencies: ['order-1'] },
        ],
        { onExisting: 'skip' },
      );
      expect(outcomes.map((o) => [o.id, o.state, o.result])).toEqual([
        ['order-1', 'done', [1]],
        ['after-order-1', 'done', ['after']],
      ]);
    } finally {
      await fresh.close();
    }
  });

  test('two feeders adding the same new id at once with skip: one adds it, the other gets it as existing', async () => {
    const a = await startFeeder(c.url);
    const b = await startFeeder(c.url);
    try {
      const results: string[] = [];
      c.runner.on('result', (r) => r.id === 'race-1' && results.push(r.id));
      const task = { id: 'race-1', module: 'timed', params: [50, 'race'] };
      const [ra, rb] = await Promise.all([
        a.add([task], { onExisting: 'skip' }),
        b.add([task], { onExisting: 'skip' }),
      ]);
      expect([ra[0].existing, rb[0].existing].filter((e) => e !== undefined)).toHaveLength(1);
      const [oa, ob] = await Promise.all([a.outcome('race-1'), b.outcome('race-1')]);
      expect(oa).toEqual(ob);
      expect(oa).toMatchObject({ state: 'done', attempts: 1 });
      expect(results).toEqual(['race-1']);
    } finally {
      await a.close();
      await b.close();
    }
  });

  test('after a master restart, an id only in the database is skipped and its stored outcome returned', async () => {
    await c.master.flushed();
    await c.restart();
    expect(c.master.scheduler.finals.has('order-2')).toBe(false);
    const fresh = await startFeeder(c.url);
    try {
      const outcomes = await fresh.work(
        [
          { id: 'order-2', module: 'ok', params: [2] },
          { id: 'order-4', module: 'ok', params: [4] },
        ],
        { onExisting: 'skip' },
      );
      expect(outcomes.map((o) => [o.id, o.state, o.result, o.attempts])).toEqual([
        ['order-2', 'done', [2], 1],
        ['order-4', 'done', [4], 1],
      ]);
    } finally {
      await fresh.close();
    }
  });
});

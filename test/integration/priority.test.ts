import type { TaskOutcome } from '../../protocol/schemas';
import { testDbName } from '../helpers/db';
import { within, WAIT_MS } from '../helpers/wait';
import { useCluster } from '../helpers/use-cluster';

describe('priority', () => {
  const c = useCluster({ dbName: testDbName('prio'), feeder: true });

  test('with runners saturated, higher priority runs first, FIFO within a priority', async () => {
    // Queue everything while no runner is connected, then give the work a single slot.
    const batch = [
      { id: 'low-1', module: 'timed', params: [0, 'low-1'], priority: 1 },
      { id: 'low-2', module: 'timed', params: [0, 'low-2'], priority: 1 },
      { id: 'mid-1', module: 'timed', params: [0, 'mid-1'], priority: 5 },
      { id: 'high-1', module: 'timed', params: [0, 'high-1'], priority: 10 },
      { id: 'low-3', module: 'timed', params: [0, 'low-3'], priority: 1 },
      { id: 'high-2', module: 'timed', params: [0, 'high-2'], priority: 10 },
      { id: 'frac', module: 'timed', params: [0, 'frac'], priority: 5.5 },
    ];
    const outcomes: TaskOutcome[] = [];
    const all = new Promise<void>((resolve) =>
      c.feeder.on('result', (o: TaskOutcome) => {
        outcomes.push(o);
        if (outcomes.length === batch.length) resolve();
      }),
    );
    await c.feeder.add(batch); // stored and queued before any runner exists
    await c.startRunner({ workers: 1, slots: 1 });
    await within(WAIT_MS, all, () => `outcomes of all ${batch.length} tasks (got ${outcomes.length})`);
    expect(outcomes.every((o) => o.state === 'done')).toBe(true);
    const order = outcomes
      .map((o) => o.result as { start: number; label: string })
      .sort((a, b) => a.start - b.start)
      .map((r) => r.label);
    expect(order).toEqual(['high-1', 'high-2', 'frac', 'mid-1', 'low-1', 'low-2', 'low-3']);
  });
});

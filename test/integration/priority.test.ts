import type { Feeder } from '../../feeder/feeder';
import type { Master } from '../../master/master';
import type { TaskOutcome } from '../../protocol/schemas';
import type { Runner } from '../../runner/runner';
import { startMaster } from '../helpers/cluster';
import { testDbName } from '../helpers/db';
import { startFeeder, startRunner } from '../helpers/clients';
import { within, WAIT_MS } from '../helpers/wait';

describe('priority', () => {
  let master: Master;
  let feeder: Feeder;
  let runner: Runner | undefined;

  beforeAll(async () => {
    master = await startMaster(testDbName('prio'));
    feeder = await startFeeder(master.url);
  });
  afterAll(async () => {
    await feeder?.close();
    await runner?.close();
    await master?.close();
  });

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
      feeder.on('result', (o: TaskOutcome) => {
        outcomes.push(o);
        if (outcomes.length === batch.length) resolve();
      }),
    );
    await feeder.add(batch); // stored and queued before any runner exists
    runner = await startRunner(master.url, { workers: 1, slots: 1 });
    await within(WAIT_MS, all, () => `outcomes of all ${batch.length} tasks (got ${outcomes.length})`);
    expect(outcomes.every((o) => o.state === 'done')).toBe(true);
    const order = outcomes
      .map((o) => o.result as { start: number; label: string })
      .sort((a, b) => a.start - b.start)
      .map((r) => r.label);
    expect(order).toEqual(['high-1', 'high-2', 'frac', 'mid-1', 'low-1', 'low-2', 'low-3']);
  });
});

/**
 * A schedule across a takeover: two masters on one database, the active one stops, the standby takes
 * over and fires the schedule from where it was — one task per slot, no slot twice, none lost with
 * `misfire: 'all'` — and the stopped master fires nothing more.
 */
import { Master } from '../../master/master';
import type { TaskView } from '../../protocol/views';
import { startFeeder, startRunner } from '../helpers/clients';
import { testLogger } from '../helpers/cluster';
import { testDbName, testMongoUrl } from '../helpers/db';
import { eventually, nextEvent } from '../helpers/wait';

const dbName = testDbName('schedules-takeover');
const closers: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const c of closers.splice(0).reverse()) await c();
});

function master(): Master {
  const m = new Master({ mongoUrl: testMongoUrl(), dbName, port: 0, logger: testLogger(), leaseMs: 1000 });
  closers.push(() => m.close());
  return m;
}

async function tasksOf(url: string, schedule: string): Promise<(TaskView & { slot: number })[]> {
  const res = await fetch(`${url}/api/tasks?batch=${schedule}&limit=500`);
  const { tasks } = (await res.json()) as { tasks: TaskView[] };
  return tasks
    .map((t) => ({ ...t, slot: Date.parse(t.id.slice(t.id.indexOf('@') + 1)) }))
    .sort((a, b) => a.slot - b.slot);
}

test('the standby that takes over fires the schedule on: every slot once, none lost', async () => {
  const first = master();
  await first.start();
  const second = master();
  await second.start();
  expect(second.leaseStatus().role).toBe('standby');
  const runner = await startRunner([first.url, second.url]);
  closers.push(() => runner.close());
  const feeder = await startFeeder([first.url, second.url]);
  closers.push(() => feeder.close());
  await feeder.schedule({ id: 'relay', every: 500, misfire: 'all', task: { module: 'ok' } });
  await eventually(async () => (await tasksOf(first.url, 'relay')).length >= 3, {
    what: '3 slots on the first',
  });

  const elected = nextEvent(second, 'active');
  await first.close();
  await elected;
  const firstCount = (await tasksOf(second.url, 'relay')).length;
  await eventually(async () => (await tasksOf(second.url, 'relay')).length >= firstCount + 4, {
    what: '4 more slots on the second',
  });
  const tasks = await tasksOf(second.url, 'relay');
  const slots = tasks.map((t) => t.slot);
  expect(new Set(tasks.map((t) => t.id)).size).toBe(tasks.length);
  expect(slots).toEqual(slots.map((_, i) => slots[0] + i * 500));
  for (const t of tasks) expect(t.created).toBeGreaterThanOrEqual(t.slot);
  const outcomes = await feeder.wait(tasks.map((t) => t.id));
  expect(outcomes.map((o) => [o.state, o.attempts])).toEqual(tasks.map(() => ['done', 1]));
  expect((await feeder.schedules()).find((s) => s.id === 'relay')?.count).toBeGreaterThanOrEqual(
    tasks.length,
  );
});

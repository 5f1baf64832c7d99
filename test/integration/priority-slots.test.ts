import { io, type Socket } from 'socket.io-client';
import type { Master } from '../../master/master';
import type { Assignment } from '../../protocol/schemas';
import { startMaster } from '../helpers/cluster';
import { testDbName } from '../helpers/db';
import { within, WAIT_MS } from '../helpers/wait';

/**
 * A runner that announces 100 slots with { 1: 30, 2: 20 } and never finishes anything, so the master
 * fills it up to its limits. A probe task of a higher range is then added: once it is assigned, every
 * assignment the master was going to make has been made (they go out in order).
 */
describe('slots and priority guarantees under saturation', () => {
  const open: { master: Master; sockets: Socket[] }[] = [];
  afterAll(async () => {
    for (const o of open) {
      for (const s of o.sockets) s.close();
      await o.master.close();
    }
  });

  async function saturate(sacred: boolean, priority: number, probePriority: number | null) {
    const master = await startMaster(testDbName('slots'), { sacredGuarantees: sacred });
    const runner = io(`${master.url}/runner`, { transports: ['websocket'], reconnection: false });
    const feeder = io(`${master.url}/feeder`, { transports: ['websocket'], reconnection: false });
    open.push({ master, sockets: [runner, feeder] });
    const assigned: Assignment[] = [];
    let onAssign: () => void = () => undefined;
    runner.on('task:assign', ({ tasks }: { tasks: Assignment[] }) => {
      assigned.push(...tasks);
      onAssign();
    });
    const hello = await runner.emitWithAck('runner:hello', {
      runnerId: `sat-${sacred}-${priority}`,
      slots: 100,
      workers: 1,
      prioritySlots: { 1: 30, 2: 20 },
    });
    expect(hello.ok).toBe(true);
    const until = (pred: () => boolean) =>
      within(
        WAIT_MS,
        new Promise<void>((resolve) => {
          onAssign = () => pred() && resolve();
          onAssign();
        }),
        () => `${pred.toString()} (assigned: ${assigned.length})`,
      );
    const add = await feeder.emitWithAck('tasks:add', {
      tasks: Array.from({ length: 150 }, (_, i) => ({ id: `w${i}`, module: 'ok', priority })),
    });
    expect(add.ok).toBe(true);
    if (probePriority === null) {
      await until(() => assigned.length === 100);
    } else {
      await until(() => assigned.length > 0);
      const probe = await feeder.emitWithAck('tasks:add', {
        tasks: [{ id: 'probe', module: 'ok', priority: probePriority }],
      });
      expect(probe.ok).toBe(true);
      await until(() => assigned.some((a) => a.id === 'probe'));
    }
    return assigned.filter((a) => a.id !== 'probe').length;
  }

  test('100 slots with {1: 30, 2: 20}: 50 tasks of priority [0,1) run at once', async () => {
    expect(await saturate(false, 0, 2)).toBe(50);
  });
  test('… 80 of priority [1,2)', async () => {
    expect(await saturate(false, 1.5, 2)).toBe(80);
  });
  test('… and all 100 of priority >= 2', async () => {
    expect(await saturate(false, 2, null)).toBe(100);
  });
  test('with sacredGuarantees, priority >= 2 is held to 70, leaving the [1,2) guarantee free', async () => {
    expect(await saturate(true, 3, 1)).toBe(70);
  });
  test('with sacredGuarantees the lower ranges keep their limits: 50 and 80', async () => {
    expect(await saturate(true, 0.5, 2)).toBe(50);
    expect(await saturate(true, 1, 2)).toBe(80);
  });
});

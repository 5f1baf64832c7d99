/**
 * Reports about an attempt are bound to whoever holds it: the worker process it was handed to, and
 * the runner connection it was assigned to. A task that writes to its worker's channel cannot
 * start, advance or settle another worker's attempt, and a runner cannot report progress for an
 * attempt another runner holds; progress is always within 0–1. Real master, real runner, real
 * sockets; each test ends with the victim finishing its own work and an honest round trip.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Socket } from 'socket.io-client';
import type { Progress } from '../../protocol/events';
import type { TaskOutcome } from '../../protocol/schemas';
import type { Runner } from '../../runner/runner';
import type { Feeder } from '../../feeder/feeder';
import { tempDir } from '../helpers/cluster';
import { waitForEvent } from '../helpers/wait';
import { rawSocket, useAttackedCluster } from './cluster';

describe('adversarial: forged reports', () => {
  let runner: Runner;
  let feeder: Feeder;
  let forger: Socket | undefined;
  const dir = tempDir('forgery');
  const progress: Progress[] = [];
  const outcomes: TaskOutcome[] = [];

  afterAll(() => forger?.close());
  const cluster = useAttackedCluster();
  beforeAll(async () => {
    runner = await cluster.startRunner({ runnerId: 'pool-r', workers: 2, slots: 2 });
    feeder = await cluster.startFeeder();
    feeder.on('progress', (p) => progress.push(p));
    feeder.on('result', (o) => outcomes.push(o));
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  /** Adds a `progress` task on pool-r that reports `values`, and resolves once it runs. */
  const startVictim = async (id: string, values: number[]) => {
    const gate = path.join(dir, `${id}.gate`);
    const started = waitForEvent(runner, 'started', (ref: { id: string }) => ref.id === id);
    await feeder.add([{ id, module: 'progress', params: [values, gate], runner: 'pool-r', maxAttempts: 1 }]);
    await started;
    return { open: () => fs.writeFileSync(gate, '') };
  };

  test('a task sending started, progress, completed {stolen:true} and failed for another worker’s attempt changes nothing: the victim finishes its own work, 0 forged reports pass', async () => {
    const victim = await startVictim('victim', []);
    const [forged] = await feeder.work([{ module: 'forge', params: ['victim#1'], runner: 'pool-r' }]);
    expect(forged).toMatchObject({ state: 'done', result: { sent: 5 } });
    // A forged outcome would have reached the feeder before the forger's own (same channel, in order).
    expect(outcomes.filter((o) => o.id === 'victim')).toEqual([]);

    victim.open();
    const [own] = await feeder.wait(['victim']);
    expect(own).toMatchObject({ state: 'done', attempts: 1, result: { pid: expect.any(Number) } });
    expect(own.result).not.toHaveProperty('stolen');
    // The forger ran in the other worker process: what is bound is the process holding the attempt.
    expect((own.result as { pid: number }).pid).not.toBe((forged.result as { pid: number }).pid);
    expect(progress.filter((p) => p.id === 'victim')).toEqual([]);
    expect(runner.pids).toHaveLength(2);
    await cluster.assertAlive();
  });

  test('a runner reporting progress for another runner’s attempt is refused with ESTALE and no feeder sees it; reported progress 7, -3, 0.5 reaches feeders as 1, 0, 0.5', async () => {
    forger = await rawSocket(cluster.master.url, '/runner');
    expect(
      await forger
        .timeout(10_000)
        .emitWithAck('runner:hello', { runnerId: 'forger-r', slots: 1, workers: 1 }),
    ).toMatchObject({ ok: true });
    const reported = waitForEvent(
      feeder,
      'progress',
      (p: Progress) => p.id === 'victim2' && p.progress === 0.5,
    );
    const victim = await startVictim('victim2', [7, -3, 0.5]);
    await reported;

    for (const value of [0.42, 99]) {
      const reply = await forger
        .timeout(10_000)
        .emitWithAck('task:progress', { id: 'victim2', attempt: 1, progress: value });
      expect(reply).toMatchObject({ ok: false, error: { code: 'ESTALE' } });
    }
    victim.open();
    const [own] = await feeder.wait(['victim2']);
    expect(own).toMatchObject({ state: 'done', attempts: 1 });
    // Anything passed on from the forger would have reached the feeder before the outcome.
    expect(progress.filter((p) => p.id === 'victim2').map((p) => p.progress)).toEqual([1, 0, 0.5]);
    await cluster.assertAlive();
  });
});

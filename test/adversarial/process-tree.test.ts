/**
 * A worker process is what a task runs in, and everything the task starts belongs to it: the
 * processes it spawns — in the worker's process group, in a session of their own, or re-parented
 * after their parent exited — die when a run timeout or a cancel kills the worker, and when the
 * runner stops. Tasks that share a worker share its globals, but the path a result takes does not
 * use anything a task can replace. Real master, real runner and worker processes.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Feeder } from '../../feeder/feeder';
import { spawnRunner, tempDir } from '../helpers/cluster';
import { eventually, waitForEvent } from '../helpers/wait';
import { useAttackedCluster } from './cluster';

const NAMES = ['group', 'detached', 'orphan'] as const;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('adversarial: process trees', () => {
  let feeder: Feeder;
  const dirs: string[] = [];
  const pids: number[] = [];

  afterAll(() => {
    // Whatever a failed test left running.
    for (const pid of pids) if (alive(pid)) process.kill(pid, 'SIGKILL');
  });
  const cluster = useAttackedCluster();
  beforeAll(async () => {
    feeder = await cluster.startFeeder();
  });
  afterAll(() => {
    for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
  });

  /** Starts spawn-tree on `runner` and resolves with the pids of the three processes it started. */
  const startTree = async (runnerId: string, extra: Record<string, unknown> = {}) => {
    const dir = tempDir('tree');
    dirs.push(dir);
    const id = path.basename(dir);
    await feeder.add([
      { id, module: 'spawn-tree', params: [dir], runner: runnerId, maxAttempts: 1, ...extra },
    ]);
    const tree = await eventually(
      () => {
        const read = NAMES.map((n) =>
          Number(fs.existsSync(path.join(dir, n)) && fs.readFileSync(path.join(dir, n), 'utf8')),
        );
        return read.every((pid) => pid > 0) && read;
      },
      { what: `the processes of task ${id} to write their pids` },
    );
    pids.push(...tree);
    expect(tree.every(alive)).toBe(true);
    return { id, dir, tree };
  };

  const allGone = (tree: number[]) =>
    eventually(() => tree.every((pid) => !alive(pid)), {
      timeout: 10_000,
      what: () => `the task's processes to be gone; alive: ${tree.filter(alive).join(', ')}`,
    });

  test('a run timeout kills the worker and the 3 processes its task started (grouped, detached, re-parented): 0 left', async () => {
    const runner = await cluster.startRunner({ runnerId: 'tree-timeout', killGraceMs: 200 });
    const { id, tree } = await startTree(runner.runnerId, { runTimeout: 3000 });
    const [worker] = runner.pids;
    const [o] = await feeder.wait([id]);
    expect(o).toMatchObject({ state: 'failed', error: { code: 'ETO' } });
    await allGone([worker, ...tree]);
    await cluster.assertAlive();
  });

  test('a cancel kills the worker and the 3 processes its task started: 0 left', async () => {
    const runner = await cluster.startRunner({ runnerId: 'tree-cancel', killGraceMs: 200 });
    const { id, tree } = await startTree(runner.runnerId);
    const [worker] = runner.pids;
    const respawned = waitForEvent(runner, 'respawn');
    expect(await feeder.cancel([id])).toEqual([id]);
    await respawned;
    await allGone([worker, ...tree]);
    await cluster.assertAlive();
  });

  test('the runner’s close kills its workers and the 3 processes a running task started: 0 left', async () => {
    const runner = await cluster.startRunner({ runnerId: 'tree-close', killGraceMs: 200 });
    const { tree } = await startTree(runner.runnerId);
    const [worker] = runner.pids;
    await runner.close();
    await allGone([worker, ...tree]);
    await cluster.assertAlive();
  });

  test('a runner killed outright: its worker and the processes in the worker’s group die with it (0 of 2 left)', async () => {
    const proc = await spawnRunner(cluster.master, 'tree-killed');
    try {
      const { dir, tree } = await startTree('tree-killed');
      const worker = Number(fs.readFileSync(path.join(dir, 'worker'), 'utf8'));
      pids.push(worker);
      await proc.kill('SIGKILL');
      // The detached ones left the group: with no runner left to find them, they are the limit the
      // docs name (the afterAll hook ends them).
      await allGone([worker, tree[0]]);
    } finally {
      await proc.kill('SIGKILL');
    }
    await cluster.assertAlive();
  });

  test('a task replacing JSON.parse, JSON.stringify and Socket.prototype.write in its worker leaves the next task’s result intact (0 of 20 corrupted)', async () => {
    const runner = await cluster.startRunner({ runnerId: 'globals', workers: 1, slots: 1 });
    const [replaced] = await feeder.work([{ module: 'replace-globals', runner: 'globals' }]);
    expect(replaced.state).toBe('done');
    const [worker] = runner.pids;
    const tasks = Array.from({ length: 20 }, (_, i) => ({
      module: 'ok',
      params: [i, { n: i }],
      runner: 'globals',
    }));
    const outcomes = await feeder.work(tasks);
    expect(outcomes.map((o) => o.result)).toEqual(tasks.map((t) => t.params));
    // The same worker ran them all: it was not replaced along the way.
    expect(runner.pids).toEqual([worker]);
  });
});

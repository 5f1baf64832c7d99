/**
 * The tasks and batches API on a real master and database: lists with filters and a cursor, a task's
 * detail and timeline, retry and "rerun from failed", cancel, batches with their graph and bulk
 * retry, and a retried task that outlives a master restart.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Master } from '../../master/master';
import { startMaster, tempDir } from '../helpers/cluster';
import { eventually } from '../helpers/wait';
import { testDbName } from '../helpers/db';
import { startFeeder, startRunner } from '../helpers/clients';
import { useCluster } from '../helpers/use-cluster';

interface TaskView {
  id: string;
  batch: string;
  module: string;
  state: string;
  attempts: number;
  error?: { code: string; message: string };
  dependencies: string[];
}

async function call<T = Record<string, unknown>>(
  master: Master,
  method: string,
  route: string,
): Promise<{ status: number; body: T & { error?: { code: string; message: string } } }> {
  const res = await fetch(new URL(route, master.url), { method });
  return {
    status: res.status,
    body: (await res.json()) as T & { error?: { code: string; message: string } },
  };
}

async function task(master: Master, id: string): Promise<TaskView & { timeline: { state: string }[] }> {
  const r = await call<{ task: TaskView & { timeline: { state: string }[] } }>(
    master,
    'GET',
    `/api/tasks/${encodeURIComponent(id)}`,
  );
  expect(r.status).toBe(200);
  return r.body.task;
}

/** Waits until every task named is in `state`, as the API shows it. */
function settle(master: Master, ids: string[], state: string): Promise<true> {
  return eventually(async () => {
    for (const id of ids) if ((await task(master, id)).state !== state) return false;
    return true as const;
  }, 20_000);
}

describe('HTTP API: tasks and batches', () => {
  const dir = tempDir('http-api');
  const c = useCluster({ dbName: testDbName('http-api'), runners: [{ workers: 1, slots: 4 }], feeder: true });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('GET /api/tasks filters by batch, state and text, and pages with a cursor until next is null', async () => {
    const tasks = Array.from({ length: 5 }, (_, i) => ({ id: `page-${i}`, module: 'ok', params: [i] }));
    await c.feeder.work(tasks, { batch: 'paged' });
    await c.feeder.work([{ id: 'other-0', module: 'ok' }], { batch: 'other' });
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const r: { body: { tasks: TaskView[]; next: string | null } } = await call(
        c.master,
        'GET',
        `/api/tasks?batch=paged&state=done&limit=2${cursor ? `&cursor=${cursor}` : ''}`,
      );
      expect(r.body.tasks.length).toBeLessThanOrEqual(2);
      seen.push(...r.body.tasks.map((t) => t.id));
      cursor = r.body.next;
      pages++;
    } while (cursor && pages < 10);
    expect(seen.sort()).toEqual(tasks.map((t) => t.id));
    expect(pages).toBe(3);
    const q = await call<{ tasks: TaskView[] }>(c.master, 'GET', '/api/tasks?q=OTHER');
    expect(q.body.tasks.map((t) => t.id)).toEqual(['other-0']);
    const none = await call<{ tasks: TaskView[] }>(c.master, 'GET', '/api/tasks?batch=paged&state=failed');
    expect(none.body.tasks).toEqual([]);
  });

  test('list inputs are validated: an unknown state, a limit over 500 or a foreign cursor is a 400 EVALIDATION', async () => {
    for (const query of ['state=finished', 'limit=501', 'cursor=nope', 'color=red']) {
      const r = await call(c.master, 'GET', `/api/tasks?${query}`);
      expect({ query, status: r.status, code: r.body.error?.code }).toEqual({
        query,
        status: 400,
        code: 'EVALIDATION',
      });
    }
  });

  test('GET /api/tasks/:id shows params, result and the timeline of its changes; an unknown id is a 404 ENOTFOUND', async () => {
    await c.feeder.work([{ id: 'detail-1', module: 'ok', params: ['x', 2] }], { batch: 'detail' });
    const r = await call<{ task: Record<string, unknown> & { timeline: { state: string }[] } }>(
      c.master,
      'GET',
      '/api/tasks/detail-1',
    );
    expect(r.body.task).toMatchObject({ id: 'detail-1', state: 'done', params: ['x', 2], result: ['x', 2] });
    const states = r.body.task.timeline.map((e) => e.state);
    expect(states[0]).toBe('ready');
    expect(states).toContain('assigned');
    expect(states[states.length - 1]).toBe('done');
    const missing = await call(c.master, 'GET', '/api/tasks/nobody-here');
    expect({ status: missing.status, code: missing.body.error?.code }).toEqual({
      status: 404,
      code: 'ENOTFOUND',
    });
  });

  test('rerun from failed: retrying a failed task runs it again, and its EDEPFAILED dependents run after it', async () => {
    const flag = path.join(dir, 'rerun-flag');
    const outcomes = await c.feeder.work(
      [
        { id: 'root', module: 'needs-file', params: [flag], maxAttempts: 1 },
        { id: 'child', module: 'ok', dependencies: ['root'] },
        { id: 'grandchild', module: 'ok', dependencies: ['child'] },
      ],
      { batch: 'rerun' },
    );
    expect(outcomes.map((o) => [o.id, o.state, o.error?.code])).toEqual([
      ['root', 'failed', 'ENOFILE'],
      ['child', 'failed', 'EDEPFAILED'],
      ['grandchild', 'failed', 'EDEPFAILED'],
    ]);
    // A dependent cannot run before its failed dependency does.
    const early = await call(c.master, 'POST', '/api/tasks/child/retry');
    expect({ status: early.status, code: early.body.error?.code }).toEqual({ status: 409, code: 'ESTATE' });

    await c.master.flushed();
    const failedDoc = await c.master.tasksCollection.findOne({ _id: 'grandchild' });
    expect(failedDoc?.state).toBe('failed');

    fs.writeFileSync(flag, 'now it exists');
    const r = await call<{ task: TaskView; retried: string[] }>(c.master, 'POST', '/api/tasks/root/retry');
    expect(r.status).toBe(200);
    expect(r.body.retried.sort()).toEqual(['child', 'grandchild', 'root']);
    expect(['ready', 'assigned', 'running', 'done']).toContain(r.body.task.state);
    await settle(c.master, ['root', 'child', 'grandchild'], 'done');
    const root = await task(c.master, 'root');
    expect(root.attempts).toBe(2);
    // maxAttempts: 1, plus the attempt made before the retry, which does not count against it.
    expect((root as unknown as { maxAttempts: number }).maxAttempts).toBe(2);
    expect(root.timeline.map((e) => e.state)).toEqual(
      expect.arrayContaining(['failed', 'ready', 'assigned', 'done']),
    );
    // The database shows it too: the retried task continued its rev and ended done.
    await c.master.flushed();
    const doc = await c.master.tasksCollection.findOne({ _id: 'grandchild' });
    expect(doc?.state).toBe('done');
    expect(doc?.rev).toBeGreaterThan(failedDoc?.rev as number);
    const again = await call(c.master, 'POST', '/api/tasks/root/retry');
    expect({ status: again.status, code: again.body.error?.code }).toEqual({ status: 409, code: 'ESTATE' });
  });

  test("a retried task's view shows its newest state while its document is still on its way: attempts allowed, result", async () => {
    const flag = path.join(dir, 'lag-flag');
    const [first] = await c.feeder.work(
      [{ id: 'lag-1', module: 'needs-file', params: [flag], maxAttempts: 1 }],
      {
        batch: 'lag',
      },
    );
    expect(first.state).toBe('failed');
    await c.master.flushed();
    // The folder's rounds are held: `tasks` keeps the failed document while the retry runs.
    const folder = (c.master as unknown as { store: { folder: { kick(): void } } }).store.folder;
    const kick = folder.kick.bind(folder);
    folder.kick = () => {};
    try {
      fs.writeFileSync(flag, 'now it exists');
      expect((await call(c.master, 'POST', '/api/tasks/lag-1/retry')).status).toBe(200);
      await settle(c.master, ['lag-1'], 'done');
      expect((await c.master.tasksCollection.findOne({ _id: 'lag-1' }))?.state).toBe('failed');
      const shown = await task(c.master, 'lag-1');
      expect(shown).toMatchObject({ state: 'done', attempts: 2, maxAttempts: 2, result: 'found' });
      const listed = await call<{ tasks: TaskView[] }>(c.master, 'GET', '/api/tasks?batch=lag');
      expect(listed.body.tasks).toEqual([
        expect.objectContaining({ id: 'lag-1', state: 'done', maxAttempts: 2 }),
      ]);
    } finally {
      folder.kick = kick;
      kick();
    }
    await c.master.flushed();
    expect((await c.master.tasksCollection.findOne({ _id: 'lag-1' }))?.state).toBe('done');
  });

  test('a task is listed and shown as soon as its add is acknowledged, before the folder would insert its document', async () => {
    // Pinned to a runner that does not exist: they stay ready.
    const refs = await c.feeder.add(
      ['fresh-1', 'fresh-2'].map((id) => ({ id, module: 'ok', runner: 'nobody' })),
      { batch: 'fresh' },
    );
    expect(refs.map((r) => r.id)).toEqual(['fresh-1', 'fresh-2']);
    expect((await task(c.master, 'fresh-1')).state).toBe('ready');
    const list = await call<{ tasks: { id: string }[] }>(c.master, 'GET', '/api/tasks?batch=fresh');
    expect(list.body.tasks.map((t) => t.id).sort()).toEqual(['fresh-1', 'fresh-2']);
  });

  test('a task id and a batch name of 200 characters (the longest allowed) are found by their routes', async () => {
    const batch = `b-${'é'.repeat(198)}`;
    const id = `t-${'x/'.repeat(99)}`;
    await c.feeder.work([{ id, module: 'ok', params: [] }], { batch });
    expect((await task(c.master, id)).batch).toBe(batch);
    const b = await call<{ batch: { id: string; total: number } }>(
      c.master,
      'GET',
      `/api/batches/${encodeURIComponent(batch)}`,
    );
    expect(b.status).toBe(200);
    expect(b.body.batch).toMatchObject({ id: batch, total: 1 });
  });

  test('POST /api/tasks/:id/cancel cancels a running task; a final one is a 409 ESTATE', async () => {
    const ref = (
      await c.feeder.add([{ id: 'to-cancel', module: 'slow', params: [30_000] }], { batch: 'cancel' })
    )[0];
    await eventually(async () => (await task(c.master, ref.id)).state === 'running');
    const r = await call<{ cancelled: string[] }>(c.master, 'POST', '/api/tasks/to-cancel/cancel');
    expect(r.body.cancelled).toEqual(['to-cancel']);
    expect((await task(c.master, 'to-cancel')).state).toBe('cancelled');
    const again = await call(c.master, 'POST', '/api/tasks/to-cancel/cancel');
    expect({ status: again.status, code: again.body.error?.code }).toEqual({ status: 409, code: 'ESTATE' });
  });

  test('batches: the list and one batch with counts, its dependency graph, and the bulk retry of its failures', async () => {
    const flag = path.join(dir, 'batch-flag');
    await c.feeder.work(
      [
        { id: 'g-a', module: 'ok' },
        { id: 'g-b', module: 'needs-file', params: [flag], maxAttempts: 1, dependencies: ['g-a'] },
        { id: 'g-c', module: 'ok', dependencies: ['g-b'] },
      ],
      { batch: 'graph' },
    );
    const list = await call<{ batches: { id: string; total: number }[] }>(c.master, 'GET', '/api/batches');
    expect(list.body.batches.find((b) => b.id === 'graph')).toMatchObject({ total: 3 });
    const one = await call<{
      batch: { counts: Record<string, number>; finishedAt: number | null; durationMs: number | null };
      graph: { nodes: { id: string; state: string }[]; edges: [string, string][]; truncated: boolean };
    }>(c.master, 'GET', '/api/batches/graph');
    expect(one.body.batch.counts).toMatchObject({ done: 1, failed: 2 });
    expect(one.body.batch.durationMs).toEqual(expect.any(Number));
    expect(one.body.graph.truncated).toBe(false);
    expect(one.body.graph.nodes.map((n) => [n.id, n.state]).sort()).toEqual([
      ['g-a', 'done'],
      ['g-b', 'failed'],
      ['g-c', 'failed'],
    ]);
    expect(one.body.graph.edges.sort()).toEqual([
      ['g-a', 'g-b'],
      ['g-b', 'g-c'],
    ]);
    fs.writeFileSync(flag, 'x');
    const retried = await call<{ retried: string[] }>(c.master, 'POST', '/api/batches/graph/retry-failed');
    expect(retried.body.retried.sort()).toEqual(['g-b', 'g-c']);
    await settle(c.master, ['g-b', 'g-c'], 'done');
    const after = await call<{ batch: { counts: Record<string, number> } }>(
      c.master,
      'GET',
      '/api/batches/graph',
    );
    expect(after.body.batch.counts).toMatchObject({ done: 3, failed: 0 });
    const missing = await call(c.master, 'GET', '/api/batches/no-such-batch');
    expect(missing.status).toBe(404);
  });

  test('a graph over 500 tasks is truncated to 500 nodes, the counts summarising the rest', async () => {
    const tasks = Array.from({ length: 520 }, (_, i) => ({ id: `big-${i}`, module: 'ok' }));
    await c.feeder.work(tasks, { batch: 'big' });
    const r = await call<{
      batch: { total: number; counts: Record<string, number> };
      graph: { nodes: unknown[]; truncated: boolean };
    }>(c.master, 'GET', '/api/batches/big');
    expect(r.body.graph.nodes).toHaveLength(500);
    expect(r.body.graph.truncated).toBe(true);
    expect(r.body.batch).toMatchObject({ total: 520, counts: { done: 520 } });
  });
});

describe('HTTP API: a retried task outlives a master restart', () => {
  const dbName = testDbName('http-api-restart');
  const dir = tempDir('http-api-restart');
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('retried with no runner connected, it is recovered as ready by the next master and runs there', async () => {
    const flag = path.join(dir, 'flag');
    let master = await startMaster(dbName);
    let runner = await startRunner(master.url);
    const feeder = await startFeeder(master.url);
    try {
      const [o] = await feeder.work([
        { id: 'survivor', module: 'needs-file', params: [flag], maxAttempts: 1 },
      ]);
      expect(o.state).toBe('failed');
      await feeder.work([{ id: 'before-restart', module: 'ok' }]);
      await runner.close();
      const r = await call<{ task: TaskView }>(master, 'POST', '/api/tasks/survivor/retry');
      expect(r.body.task.state).toBe('ready');
    } finally {
      await feeder.close();
      await master.close();
    }
    master = await startMaster(dbName);
    try {
      expect(master.scheduler.tasks.get('survivor')?.state).toBe('ready');
      // A task this master never saw change: its timeline comes from its document.
      const old = await task(master, 'before-restart');
      expect(old.timeline.map((e) => e.state)).toEqual(['waiting', 'assigned', 'done']);
      fs.writeFileSync(flag, 'x');
      runner = await startRunner(master.url);
      await settle(master, ['survivor'], 'done');
      expect((await task(master, 'survivor')).attempts).toBe(2);
    } finally {
      await runner.close();
      await master.close();
    }
  });
});

/**
 * The runner against the real master (own database, port 0), fed through a bare /feeder socket so
 * only runner behaviour is under test: what the master records is what the runner reported.
 */
import path from 'node:path';
import { io, type Socket } from 'socket.io-client';
import { silentLogger } from '../../common/logger';
import { Master } from '../../master/master';
import { NAMESPACES, type FeederToMaster, type MasterToFeeder } from '../../protocol/events';
import type { TaskInput, TaskOutcome } from '../../protocol/schemas';
import { Runner } from '../../runner/runner';
import { testDbName, testMongoUrl } from '../helpers/db';
import { nextEvent, waitForEvent, within, WAIT_MS } from '../helpers/wait';

const FIXTURES = path.resolve(__dirname, '..', 'fixtures', 'tasks');

describe('runner with the real master', () => {
  const dbName = testDbName(__filename);
  let master: Master;
  let runner: Runner;
  let feeder: Socket<MasterToFeeder, FeederToMaster>;

  beforeAll(async () => {
    master = new Master({
      mongoUrl: testMongoUrl(),
      dbName,
      port: 0,
      maxAttempts: 2,
      logger: silentLogger(),
    });
    await master.start();
    runner = new Runner({
      runnerId: 'rm-1',
      prioritySlots: { '5': 1 },
      master: master.url,
      tasks: [FIXTURES],
      workers: 2,
      slots: 4,
      logger: silentLogger(),
      orphanWatchdog: false,
    });
    await runner.start();
    feeder = io(new URL(NAMESPACES.feeder, master.url).href, { transports: ['websocket'], forceNew: true });
    await nextEvent(feeder, 'connect', { what: 'the raw feeder connected' });
  });
  afterAll(async () => {
    feeder?.disconnect();
    await runner?.close();
    await master?.close();
  });

  /** Adds a batch and resolves with the final outcome of each task, in the order given. */
  async function work(tasks: TaskInput[]): Promise<TaskOutcome[]> {
    const got = new Map<string, TaskOutcome>();
    let ids: string[] = [];
    let finish!: () => void;
    const all = new Promise<void>((r) => (finish = r));
    const on = ({ outcomes }: { outcomes: TaskOutcome[] }) => {
      for (const o of outcomes) got.set(o.id, o);
      if (ids.length && ids.every((id) => got.has(id))) finish();
    };
    feeder.on('task:outcomes', on);
    const reply = await feeder.timeout(10_000).emitWithAck('tasks:add', { tasks });
    if (!reply.ok) throw new Error(reply.error.message);
    ids = reply.tasks.map((t: { id: string }) => t.id);
    if (ids.every((id) => got.has(id))) finish();
    await within(WAIT_MS, all, () => `outcomes of ${ids.filter((id) => !got.has(id)).join(', ')}`).finally(
      () => feeder.off('task:outcomes', on),
    );
    return ids.map((id) => got.get(id) as TaskOutcome);
  }

  test('tasks of every module flavour are done with their results', async () => {
    const outcomes = await work([
      { module: 'ok', params: [1, 'a'] },
      { module: 'ts-task', params: [{ a: 20, b: 22 }] },
      { module: 'esm-task', params: ['master'] },
      { module: 'legacy-done', params: ['x'] },
      { module: 'sub/nested', params: [5] },
    ]);
    expect(outcomes.map((o) => [o.state, o.attempts])).toEqual(Array(5).fill(['done', 1]));
    expect(outcomes.map((o) => o.result)).toEqual([
      [1, 'a'],
      { id: expect.any(String), sum: 42 },
      { base: 'esm-task.mjs', url: true, hello: 'hi master' },
      { legacy: true, params: 'x' },
      { nested: true, x: 5 },
    ]);
  });

  test('a crash is retried (ECRASH); a module the runner lacks or cannot load is not sent to it again', async () => {
    const [crash, missing, invalid, after] = await work([
      { module: 'crash' },
      { module: 'not-there', assignTimeout: 500 },
      { module: 'invalid-export', assignTimeout: 500 },
      { module: 'ok', params: ['after'] },
    ]);
    expect(crash).toMatchObject({ state: 'failed', attempts: 2, error: { code: 'ECRASH' } });
    // Never sent: the runner does not announce it. The assign timeout says why nobody took it.
    expect(missing).toMatchObject({ state: 'failed', attempts: 0, error: { code: 'EATO' } });
    expect(missing.error?.message).toContain('no connected runner has module not-there');
    // Sent once: its EMODULE is the runner's, so it waited for a runner that can load it.
    expect(invalid).toMatchObject({ state: 'failed', attempts: 1, error: { code: 'EATO' } });
    expect(invalid.error?.message).toContain('no connected runner can load module invalid-export: rm-1');
    expect(after).toMatchObject({ state: 'done', result: ['after'] });
  });

  test('runTimeout on a CPU-bound task ends in ETO, and the runner keeps working', async () => {
    const [spin, ok] = await work([
      { module: 'cpu-loop', runTimeout: 200, maxAttempts: 1 },
      { module: 'timed', params: [50, 'ok'] },
    ]);
    expect(spin).toMatchObject({ state: 'failed', error: { code: 'ETO' } });
    expect(ok).toMatchObject({ state: 'done', result: { label: 'ok' } });
    expect(runner.pids).toHaveLength(2);
  });

  test('a task adds follow-up tasks through the master, which runs them', async () => {
    const [parent] = await work([{ module: 'add-followup', params: ['f1', 'f2'] }]);
    expect(parent.state).toBe('done');
    const refs = parent.result as { id: string }[];
    expect(refs).toHaveLength(2);
    // Listen before asking: an outcome can be sent while the master still answers the watch.
    const known = new Map<string, TaskOutcome>();
    let check: () => void = () => undefined;
    const on = ({ outcomes }: { outcomes: TaskOutcome[] }) => {
      for (const o of outcomes) known.set(o.id, o);
      check();
    };
    feeder.on('task:outcomes', on);
    const watched = await feeder.timeout(10_000).emitWithAck('tasks:watch', { ids: refs.map((r) => r.id) });
    if (!watched.ok) throw new Error(watched.error.message);
    for (const o of watched.outcomes as TaskOutcome[]) known.set(o.id, o);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`follow-up outcomes missing: ${JSON.stringify([...known.keys()])}`)),
        20_000,
      );
      check = () => {
        if (!refs.every((r) => known.has(r.id))) return;
        clearTimeout(timer);
        feeder.off('task:outcomes', on);
        resolve();
      };
      check();
    });
    expect(refs.map((r) => known.get(r.id)?.result)).toEqual([['f1'], ['f2']]);
  });

  test('the hello announces prioritySlots; system messages go both ways', async () => {
    expect(master.listRunners()).toContainEqual(
      expect.objectContaining({ id: 'rm-1', prioritySlots: { '5': 1 } }),
    );
    const atRunner = waitForEvent<[unknown, string]>(runner, 'sysmsg', undefined, {
      what: 'the system message reached runner rm-1',
    });
    const sent = await feeder
      .timeout(10_000)
      .emitWithAck('sysmsg:send', { msg: { hi: 'runner' }, to: 'rm-1' });
    expect(sent).toMatchObject({ ok: true, delivered: 1 });
    expect(await atRunner).toEqual([{ hi: 'runner' }, expect.any(String)]);
    const atMaster = nextEvent(master, 'sysmsg', { what: "the runner's system message reached the master" });
    expect(await runner.systemMessage('to master', 'MASTER')).toMatchObject({ ok: true, delivered: 1 });
    expect(await atMaster).toBe('to master');
  });
});

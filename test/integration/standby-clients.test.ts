/**
 * Clients of an active master and its standby, all real: two masters on one database (the second
 * stands by), runners, feeders and the operator commands given several URLs. A client given the
 * standby first, or only the standby, reaches the active master; when the active master stops,
 * they follow the standby that takes over, and a feeder waiting on an outcome gets it from there; a
 * feeder whose add lost its answer sends the same add again and has it acknowledged once.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Socket } from 'socket.io-client';
import { api } from '../../bin/api-client';
import type { Feeder } from '../../feeder/feeder';
import type { MasterOptions } from '../../master/options';
import { capturingLogger } from '../helpers/capture';
import { startFeeder, startRunner } from '../helpers/clients';
import { createMaster, freePort, spawnCli, tempDir, type Proc } from '../helpers/cluster';
import { testDbName, testDbUrl } from '../helpers/db';
import { eventually, nextEvent } from '../helpers/wait';

const closers: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c();
});

/** An active master and a standby on one new database, closed after the test. */
async function pair(name: string, opts: Partial<MasterOptions> = {}) {
  const dbName = testDbName(name);
  const active = createMaster(dbName, { leaseMs: 5000, ...opts });
  closers.push(() => active.close());
  await active.start();
  const standby = createMaster(dbName, { leaseMs: 5000, ...opts });
  closers.push(() => standby.close());
  await standby.start();
  expect(active.leaseStatus().role).toBe('active');
  expect(standby.leaseStatus()).toMatchObject({ role: 'standby', active: active.url });
  return { active, standby };
}

/**
 * Cuts the feeder's transport the moment the master's next answer arrives, before the feeder reads
 * it, as a network would: what the master did is done, and the feeder cannot know. Returns the adds
 * the feeder sends, as sent.
 */
function loseNextAnswer(feeder: Feeder, then: () => void = () => undefined): unknown[] {
  const socket = (feeder as unknown as { socket: Socket }).socket;
  const sent: unknown[] = [];
  socket.onAnyOutgoing((event: string, req: unknown) => {
    if (event === 'tasks:add') sent.push(req);
  });
  const engine = socket.io.engine;
  const cut = (packet: { type: string; data?: unknown }) => {
    // An acknowledgement on /feeder: Socket.IO's packet type 3.
    if (packet.type === 'message' && typeof packet.data === 'string' && packet.data.startsWith('3/feeder,')) {
      engine.off('packet', cut);
      engine.close();
      then();
    }
  };
  engine.on('packet', cut);
  return sent;
}

describe('clients of a standby and an active master', () => {
  test('a runner given the standby first and a feeder given only the standby reach the active master; a task round-trips', async () => {
    const { active, standby } = await pair('reach');
    const runner = await startRunner([standby.url, active.url]);
    closers.push(() => runner.close());
    expect(runner.master).toBe(active.url);
    const { logger, lines } = capturingLogger();
    const feeder = await startFeeder(standby.url, { logger });
    closers.push(() => feeder.close());
    expect(feeder.master).toBe(active.url);
    expect(lines).toContainEqual(
      expect.objectContaining({
        level: 'info',
        message: 'the master is a standby; following the active master',
        master: standby.url,
        active: active.url,
      }),
    );
    expect(await feeder.work([{ module: 'ok', params: ['via the standby'] }])).toMatchObject([
      { state: 'done', result: ['via the standby'] },
    ]);
  });

  test('when the active master stops, runner and feeder follow the standby that takes over; the task running across it finishes once and its outcome reaches the feeder', async () => {
    const { active, standby } = await pair('follow');
    const runner = await startRunner([active.url, standby.url]);
    closers.push(() => runner.close());
    const feeder = await startFeeder([active.url, standby.url]);
    closers.push(() => feeder.close());
    const dir = tempDir('standby-clients');
    closers.push(async () => fs.rmSync(dir, { recursive: true, force: true }));
    const runs = path.join(dir, 'runs');
    const gate = path.join(dir, 'gate');
    const [ref] = await feeder.add([{ id: 'across', module: 'gate', params: [runs, 'across', gate] }]);
    await eventually(() => fs.existsSync(runs), { what: 'the gated task started on the runner' });
    const outcome = feeder.outcome(ref.id);

    const tookOver = nextEvent(standby, 'active', { what: 'the standby taking over', timeout: 15_000 });
    await active.close();
    expect(await tookOver).toBe(2);
    // The task finishes only now, with the new master in charge.
    fs.writeFileSync(gate, '');
    expect(await outcome).toMatchObject({ id: 'across', state: 'done', result: { label: 'across' } });
    expect(fs.readFileSync(runs, 'utf8')).toBe('across\n');
    expect(runner.master).toBe(standby.url);
    expect(feeder.master).toBe(standby.url);
    // And new work goes through the new active master.
    expect(await feeder.work([{ module: 'ok', params: ['after'] }])).toMatchObject([
      { state: 'done', result: ['after'] },
    ]);
  });

  test('the operator commands use the master whose /health says active, passing over a dead URL and the standby', async () => {
    const { active, standby } = await pair('cli');
    const dead = `http://127.0.0.1:${await freePort()}`;
    const health = await api<{ role: string; epoch: number }>(
      { master: `${dead},${standby.url},${active.url}` },
      '/health',
    );
    expect(health).toMatchObject({ role: 'active', epoch: 1 });
    await expect(api({ master: `${dead},htp://x` }, '/health')).rejects.toThrow(
      '--master[1]: "htp://x" is not an http:// or https:// URL',
    );
  });
});

describe('a runner that heard a newer master', () => {
  test('refuses the assignments of a master of an older epoch, with a warning naming both epochs, and runs nothing of it', async () => {
    const { active, standby } = await pair('epoch');
    const tookOver = nextEvent(standby, 'active', { what: 'the standby taking over', timeout: 15_000 });
    await active.close();
    expect(await tookOver).toBe(2);
    // A master elected on another database is at epoch 1: to this runner, a master that was replaced.
    const older = createMaster(testDbName('epoch-older'));
    closers.push(() => older.close());
    await older.start();
    expect(older.leaseStatus()).toMatchObject({ role: 'active', epoch: 1 });

    const { logger, lines } = capturingLogger();
    const runner = await startRunner([standby.url, older.url], { runnerId: 'fenced', logger });
    closers.push(() => runner.close());
    expect(runner.epoch).toBe(2);
    const started: unknown[] = [];
    runner.on('started', (ref) => started.push(ref));
    const moved = nextEvent(runner, 'ready', {
      what: 'the runner ready on the older master',
      timeout: 15_000,
    });
    await standby.close();
    await moved;
    expect(runner.master).toBe(older.url);
    expect(lines).toContainEqual(
      expect.objectContaining({
        level: 'warn',
        message: expect.stringContaining('the master answered with epoch 1, older than epoch 2 heard before'),
      }),
    );

    const feeder = await startFeeder(older.url);
    closers.push(() => feeder.close());
    await feeder.add([{ id: 'stale', module: 'ok', runner: 'fenced' }]);
    const refused = await eventually(
      () => lines.find((l) => String(l.message).startsWith('task:assign refused (ESTALE)')),
      { what: "the runner's refusal of the older master's assignment" },
    );
    expect(refused).toMatchObject({ level: 'warn', epoch: 1, seenEpoch: 2, master: older.url });
    expect(refused.message).toContain('it carries epoch 1, older than epoch 2 heard before');
    expect(started).toEqual([]);
    expect(runner.running).toEqual([]);
  });
});

describe('a master that steps down', () => {
  const procs: Proc[] = [];
  afterAll(async () => {
    for (const p of procs) await p.kill('SIGKILL');
  });

  test('paused past its lease, it wakes, steps down and closes its clients: they follow the standby it names, and the task running across it finishes once', async () => {
    const dbName = testDbName('step-down');
    const port = await freePort();
    const first = spawnCli([
      'master',
      '--port',
      String(port),
      '--mongo-url',
      testDbUrl(dbName),
      '--lease-ms',
      '1000',
    ]);
    procs.push(first);
    await first.waitFor(/master listening/, 20_000);
    const firstUrl = `http://127.0.0.1:${port}`;
    const standby = createMaster(dbName, { leaseMs: 1000 });
    closers.push(() => standby.close());
    await standby.start();
    expect(standby.leaseStatus()).toMatchObject({ role: 'standby', active: firstUrl });

    const runner = await startRunner([firstUrl, standby.url]);
    closers.push(() => runner.close());
    const feeder = await startFeeder([firstUrl, standby.url]);
    closers.push(() => feeder.close());
    const dir = tempDir('step-down');
    closers.push(async () => fs.rmSync(dir, { recursive: true, force: true }));
    const runs = path.join(dir, 'runs');
    const gate = path.join(dir, 'gate');
    await feeder.add([{ id: 'paused', module: 'gate', params: [runs, 'paused', gate] }]);
    await eventually(() => fs.existsSync(runs), { what: 'the gated task started on the runner' });
    const outcome = feeder.outcome('paused');
    const reasons: string[] = [];
    feeder.on('disconnect', (reason) => reasons.push(reason));

    const tookOver = nextEvent(standby, 'active', { what: 'the standby taking over', timeout: 15_000 });
    first.child.kill('SIGSTOP');
    await tookOver;
    first.child.kill('SIGCONT');
    await first.waitFor(/stepping down to standby/, 15_000);
    // Its clients were still connected to it (a pause does not close a socket): it closes them, and
    // they go where it says the active master is.
    await eventually(
      () => runner.master === standby.url && feeder.master === standby.url && feeder.connected,
      {
        what: 'the runner and the feeder on the new active master',
      },
    );
    fs.writeFileSync(gate, '');
    expect(await outcome).toMatchObject({ id: 'paused', state: 'done', result: { label: 'paused' } });
    expect(fs.readFileSync(runs, 'utf8')).toBe('paused\n');
  });
});

describe('a feeder whose add lost its answer', () => {
  test('sends the same add again once reconnected, and the master acknowledges it without a second copy', async () => {
    const { active } = await pair('lost-add');
    const feeder = await startFeeder(active.url);
    closers.push(() => feeder.close());
    const sent = loseNextAnswer(feeder);
    const refs = await feeder.add([
      { id: 'lost-1', module: 'ok', params: [1] },
      { id: 'lost-2', module: 'ok', params: [2] },
    ]);
    expect(refs.map((r) => r.id)).toEqual(['lost-1', 'lost-2']);
    expect(sent).toHaveLength(2);
    expect(sent[1]).toEqual(sent[0]);
    expect((sent[0] as { addKey?: unknown }).addKey).toEqual(expect.any(String));
    const runner = await startRunner(active.url);
    closers.push(() => runner.close());
    expect(await feeder.wait(['lost-1', 'lost-2'])).toMatchObject([
      { state: 'done', result: [1] },
      { state: 'done', result: [2] },
    ]);
  });

  test('sent again to the standby that took over from the master that stored it, it is acknowledged there as stored', async () => {
    const { active, standby } = await pair('lost-takeover');
    const feeder = await startFeeder([active.url, standby.url]);
    closers.push(() => feeder.close());
    const tookOver = nextEvent(standby, 'active', { what: 'the standby taking over', timeout: 15_000 });
    // The answer is lost, and the master that stored the add stops.
    const sent = loseNextAnswer(feeder, () => void active.close());
    const refs = await feeder.add([{ id: 'moved-1', module: 'ok', params: ['moved'] }]);
    await tookOver;
    expect(refs.map((r) => r.id)).toEqual(['moved-1']);
    expect(sent).toHaveLength(2);
    expect(sent[1]).toEqual(sent[0]);
    expect(feeder.master).toBe(standby.url);
    const runner = await startRunner(standby.url);
    closers.push(() => runner.close());
    expect(await feeder.outcome('moved-1')).toMatchObject({ state: 'done', result: ['moved'] });
  });

  test('an add of tasks without ids is not sent again (the master would store a copy): it fails saying the tasks may or may not be stored', async () => {
    const { active } = await pair('lost-unnamed');
    const feeder = await startFeeder(active.url);
    closers.push(() => feeder.close());
    const sent = loseNextAnswer(feeder);
    await expect(feeder.add([{ module: 'ok', params: ['unnamed'] }])).rejects.toThrow(
      'the connection to the master was lost before it answered tasks:add: the tasks may or may not have been stored',
    );
    expect(sent).toHaveLength(1);
  });
});

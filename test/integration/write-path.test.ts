/**
 * The durable writes on one task's path, counted at the wire: the master talks to the database
 * through a proxy that records every command. An add and the assignment it makes to an idle runner
 * share one journal write; the result takes one more. Nothing else on the path waits for the database.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Feeder } from '../../feeder/feeder';
import type { Master } from '../../master/master';
import type { AttemptRef } from '../../protocol/events';
import type { TaskOutcome } from '../../protocol/schemas';
import type { Runner } from '../../runner/runner';
import { startFeeder, startRunner } from '../helpers/clients';
import { startMaster, tempDir } from '../helpers/cluster';
import { testDbName, testMongoUrl } from '../helpers/db';
import { waitForEvent } from '../helpers/wait';
import { WireProxy, type SeenCommand } from '../helpers/wire-proxy';

describe('the durable writes on a task’s path', () => {
  let proxy: WireProxy;
  let master: Master;
  let runner: Runner;
  let feeder: Feeder;
  let dir: string;

  beforeAll(async () => {
    dir = tempDir('write-path');
    proxy = await WireProxy.start(testMongoUrl());
    const dbName = testDbName('write-path');
    master = await startMaster(dbName, { mongoUrl: proxy.url(dbName) });
    runner = await startRunner(master.url, { workers: 1, slots: 2 });
    feeder = await startFeeder(master.url);
  });
  afterAll(async () => {
    await feeder?.close();
    await runner?.close();
    await master?.close();
    await proxy?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const journalInserts = (since: number): SeenCommand[] =>
    proxy.writesSince(since).filter((c) => c.name === 'insert' && c.collection === 'task_journal');

  test('an add and its assignment to an idle runner are one journal write; the result is one more', async () => {
    // Once, so that everything a first task sets up (collections, the module's first load) is done.
    expect(await feeder.work([{ module: 'ok', params: ['warm'] }])).toMatchObject([{ state: 'done' }]);

    const gate = path.join(dir, 'open');
    const since = Date.now();
    const started = waitForEvent<[AttemptRef]>(runner, 'started', (ref) => ref.id === 'held', {
      what: 'task "held" started on the runner',
    });
    const outcome = waitForEvent<[TaskOutcome]>(feeder, 'result', (o) => o.id === 'held', {
      what: 'the outcome of task "held"',
    });
    await feeder.add([{ id: 'held', module: 'gate', params: [path.join(dir, 'runs'), 'held', gate] }]);
    await started;
    // The add was acknowledged and the attempt sent after one write, which held both.
    expect(journalInserts(since)).toHaveLength(1);

    fs.writeFileSync(gate, '');
    const [o] = await outcome;
    expect(o).toMatchObject({ state: 'done', result: { label: 'held' } });
    expect(journalInserts(since)).toHaveLength(2);
  });
});

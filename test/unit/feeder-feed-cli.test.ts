import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import { feed, type FeedOptions } from '../../feeder/feed-cli';
import type { TaskOutcome } from '../../protocol/schemas';
import { ROOT, freePort, tempDir, testLogger } from '../helpers/cluster';
import { testDbName } from '../helpers/db';
import { useCluster } from '../helpers/use-cluster';

/** A stream that keeps what is written to it. */
class Capture extends Writable {
  text = '';
  isTTY = false;
  override _write(chunk: Buffer, _enc: string, done: () => void): void {
    this.text += chunk.toString();
    done();
  }
}

describe('taskmaster feed', () => {
  const dir = tempDir('feed-cli');
  const c = useCluster({ dbName: testDbName('feed-cli'), runners: [{ workers: 2, slots: 4 }] });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = (name: string, text: string) => {
    const p = path.join(dir, name);
    fs.writeFileSync(p, text);
    return p;
  };
  const run = async (f: string, opts: Partial<FeedOptions> = {}) => {
    const out = new Capture();
    const err = new Capture();
    const code = await feed({
      file: f,
      feeder: { master: c.url },
      logger: testLogger(),
      out,
      err,
      ...opts,
    });
    return { code, out: out.text, err: err.text };
  };

  test('without --wait it prints how many tasks were stored in which batch, and their ids', async () => {
    const f = file('two.ndjson', '{"id":"s-1","module":"ok"}\n{"id":"s-2","module":"ok"}\n');
    const r = await run(f, { batch: 'stored-batch' });
    expect(r.code).toBe(0);
    expect(r.out).toBe('stored 2 tasks in batch stored-batch\ns-1\ns-2\n');
  });

  test('bytes that are not UTF-8 are refused naming the line: exit 2, nothing stored', async () => {
    const p = path.join(dir, 'latin1.ndjson');
    fs.writeFileSync(
      p,
      Buffer.concat([
        Buffer.from('{"id":"u-1","module":"ok"}\n{"id":"u-2","module":"ok","params":["caf'),
        Buffer.from([0xe9]), // "é" in Latin-1
        Buffer.from('"]}\n'),
      ]),
    );
    const queued = c.master.scheduler.queuedCount();
    const r = await run(p, { batch: 'latin1-batch' });
    expect(r.code).toBe(2);
    expect(r.err).toBe(`taskmaster feed: ${p}:2: not valid UTF-8 (refused rather than replaced)\n`);
    expect(c.master.scheduler.queuedCount()).toBe(queued);
  });

  test('a module no connected runner has (a typo): the batch is stored, and a warning names the module', async () => {
    const f = file('typo.ndjson', '{"id":"t-1","module":"gret"}\n{"id":"t-2","module":"ok"}\n');
    const r = await run(f, { batch: 'typo-batch' });
    expect(r.code).toBe(0);
    expect(r.err).toBe('warning: 1 task of this add wait: no connected runner has module gret\n');
    expect(r.out).toBe('stored 2 tasks in batch typo-batch\nt-1\nt-2\n');
  });

  test('--wait prints a summary naming each failed task with its code and message, and exits 1', async () => {
    const f = file(
      'mixed.json',
      JSON.stringify([
        { id: 'm-ok', module: 'ok', params: ['fine'] },
        { id: 'm-bad', module: 'throws', params: ['it broke', 'EBROKEN', true] },
        { id: 'm-dep', module: 'ok', dependencies: ['m-bad'] },
      ]),
    );
    const r = await run(f, { wait: true });
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/3 tasks in \d+\.\d s: 1 done, 2 failed, 0 cancelled/);
    expect(r.err).toMatch(/m-bad {2}failed {2}EBROKEN {2}it broke/);
    expect(r.err).toMatch(/m-dep {2}failed {2}EDEPFAILED/);
    // Progress as plain lines, since the stream is not a terminal.
    expect(r.err).toMatch(/3\/3 finished, 100%: done 1, failed 2, cancelled 0/);
    expect(r.out.split('\n')[0]).toBe('m-ok\tdone\t["fine"]');
  });

  test('--wait ends with its summary: result lines first, then the summary as the last line', async () => {
    const f = file(
      'order.json',
      JSON.stringify([
        { id: 'o-1', module: 'ok', params: [1] },
        { id: 'o-2', module: 'ok' },
      ]),
    );
    // One stream for both, as on a terminal: the order of the writes is the order the user sees.
    const both = new Capture();
    const code = await feed({
      file: f,
      feeder: { master: c.url },
      logger: testLogger(),
      wait: true,
      out: both,
      err: both,
    });
    expect(code).toBe(0);
    const lines = both.text.trimEnd().split('\n');
    expect(lines.at(-1)).toMatch(/^2 tasks in \d+\.\d s: 2 done, 0 failed, 0 cancelled$/);
    expect(lines.indexOf('o-1\tdone\t[1]')).toBeGreaterThan(-1);
    expect(lines.indexOf('o-1\tdone\t[1]')).toBeLessThan(lines.length - 1);
  });

  test('--wait --out FILE writes the results to the file and --quiet prints none; both end with the summary', async () => {
    const f = file('quiet.json', JSON.stringify([{ id: 'q-1', module: 'ok', params: ['x'] }]));
    const outFile = path.join(dir, 'results.txt');
    const toFile = await run(f, { wait: true, outFile });
    expect(toFile.code).toBe(0);
    expect(toFile.out).toBe('');
    expect(fs.readFileSync(outFile, 'utf8')).toBe('q-1\tdone\t["x"]\n');
    expect(toFile.err.trimEnd().split('\n').slice(-2)).toEqual([
      expect.stringMatching(/^1 tasks in .* 1 done/),
      `results in ${outFile}`,
    ]);
    const quiet = await run(f, { wait: true, quiet: true });
    expect(quiet.code).toBe(0);
    expect(quiet.out).toBe('');
    expect(quiet.err.trimEnd().split('\n').at(-1)).toMatch(/^1 tasks in .* 1 done/);
  });

  test('ids in a batch file are local to each feed: the same file is fed twice, dependencies follow, results keep its ids', async () => {
    const f = file(
      'again.json',
      JSON.stringify([
        { id: 'first', module: 'ok', params: ['one'] },
        { id: 'second', module: 'ok', params: ['two'], dependencies: ['first'] },
      ]),
    );
    const stored: string[][] = [];
    for (let i = 0; i < 2; i++) {
      const r = await run(f, { wait: true, json: true });
      expect(r.code).toBe(0);
      const outcomes = JSON.parse(r.out) as (TaskOutcome & { taskId: string })[];
      expect(outcomes.map((o) => [o.id, o.state])).toEqual([
        ['first', 'done'],
        ['second', 'done'],
      ]);
      expect(outcomes[0].taskId).toBe(`${outcomes[0].batch}/first`);
      expect(outcomes[0].batch).toMatch(/^again-/);
      stored.push(outcomes.map((o) => o.taskId));
    }
    expect(stored[0]).not.toEqual(stored[1]);
  });

  test('the same file fed again under the same --batch: refused naming the id, or with --on-existing skip only the new tasks are added', async () => {
    const f = file('orders.ndjson', '{"id":"o-1","module":"ok","params":[1]}\n');
    expect((await run(f, { batch: 'orders', wait: true })).code).toBe(0);
    const refused = await run(f, { batch: 'orders' });
    expect(refused.code).toBe(2);
    expect(refused.err).toContain('tasks[0].id: id "o-1" is already taken');
    const more = file(
      'more-orders.ndjson',
      '{"id":"o-1","module":"ok","params":[1]}\n{"id":"o-2","module":"ok","params":[2]}\n',
    );
    const listed = await run(more, { batch: 'orders', onExisting: 'skip' });
    expect(listed.code).toBe(0);
    expect(listed.out).toBe(
      'stored 1 task in batch orders; 1 already stored, skipped\no-1\texisting\tdone\no-2\n',
    );
    const waited = await run(more, { batch: 'orders', onExisting: 'skip', wait: true });
    expect(waited.code).toBe(0);
    expect(waited.out).toBe('o-1\tdone\t[1]\no-2\tdone\t[2]\n');
    expect(waited.err).toContain(
      'stored 0 tasks in batch orders; 2 already stored, skipped; waiting for the outcomes',
    );
  });

  test('--wait --json prints the outcomes as one JSON array in input order and exits 0 when all are done', async () => {
    const f = file(
      'ok.ndjson',
      '{"id":"j-1","module":"timed","params":[50,"a"]}\n{"id":"j-2","module":"ok","params":[2]}\n',
    );
    const r = await run(f, { wait: true, json: true });
    expect(r.code).toBe(0);
    const outcomes = JSON.parse(r.out) as TaskOutcome[];
    expect(outcomes.map((o) => [o.id, o.state])).toEqual([
      ['j-1', 'done'],
      ['j-2', 'done'],
    ]);
  });

  test('an invalid batch exits 2 and prints every issue, with its NDJSON line', async () => {
    const f = file('bad.ndjson', '{"module":"ok"}\n\n{"module":"../up"}\n{"module":"ok","priority":"x"}\n');
    const r = await run(f);
    expect(r.code).toBe(2);
    expect(r.err).toContain('nothing was stored (3 issues)');
    expect(r.err).toContain(`  tasks[1].module: must not contain ".." (${f}:3)`);
    expect(r.err).toMatch(
      new RegExp(`  tasks\\[2\\]\\.priority: .* \\(${f.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:4\\)`),
    );
    expect(r.out).toBe('');
  });

  test('a file larger than one message goes in adds as it is read again: a dependency on a later line is sent first, results keep the file ids in file order', async () => {
    // 60 tasks of ~300 bytes against a message with 4 KB of room: about 10 adds of half a message.
    const pad = 'p'.repeat(250);
    const rows = Array.from({ length: 60 }, (_, i) =>
      JSON.stringify({
        id: `big-${i}`,
        module: 'ok',
        params: [i, pad],
        // The first task depends on the last: the file's order is not a dependency order.
        ...(i === 0 ? { dependencies: ['big-59'] } : i % 7 === 0 ? { dependencies: [`big-${i - 1}`] } : {}),
      }),
    );
    const f = file('big.ndjson', `${rows.join('\n')}\n`);
    const r = await run(f, {
      wait: true,
      json: true,
      feeder: { master: c.master.url, maxMessageBytes: 20 * 1024 },
    });
    expect(r.code).toBe(0);
    const outcomes = JSON.parse(r.out) as (TaskOutcome & { taskId: string; result: unknown[] })[];
    expect(outcomes.map((o) => [o.id, o.state])).toEqual(rows.map((_, i) => [`big-${i}`, 'done']));
    expect(outcomes[0].taskId).toBe(`${outcomes[0].batch}/big-0`);
    expect(outcomes[59].result).toEqual([59, pad]);
    // Sent in adds of at most half a message: the batch took more than one.
    const stored = await c.master.readTasks();
    expect(await stored.countDocuments({ batch: outcomes[0].batch })).toBe(60);
  });

  test('a large file naming an id twice is refused before anything is sent, naming both lines', async () => {
    const row = (id: string) => JSON.stringify({ id, module: 'ok', params: ['x'.repeat(300)] });
    const f = file('twice.ndjson', [row('a'), row('b'), row('c'), row('a')].join('\n'));
    const r = await run(f, { feeder: { master: 'http://127.0.0.1:1', maxMessageBytes: 1024 } });
    expect(r.code).toBe(2);
    expect(r.err).toContain(`${f}:4: id "a" is also the id of line 1: ids must be unique`);
  });

  test('a large file refused by the master in a later add: exit 2, the issue names its line and what earlier adds stored', async () => {
    const rows = Array.from({ length: 30 }, (_, i) =>
      JSON.stringify({ id: `late-${i}`, module: i === 25 ? '../up' : 'ok', params: ['y'.repeat(200)] }),
    );
    const f = file('late.ndjson', `${rows.join('\n')}\n`);
    const r = await run(f, { feeder: { master: c.master.url, maxMessageBytes: 20 * 1024 } });
    expect(r.code).toBe(2);
    expect(r.err).toMatch(
      /refused the batch, after \d+ of its tasks were stored by earlier adds \(\d+ issues?\)/,
    );
    expect(r.err).toContain(`  tasks[25].module: must not contain ".." (${f}:26)`);
  });

  test('bad JSON exits 2 naming the line, without contacting the master', async () => {
    const f = file('broken.ndjson', '{"module":"ok"}\n{"module":\n');
    const r = await run(f, { feeder: { master: 'http://127.0.0.1:1' } });
    expect(r.code).toBe(2);
    expect(r.err).toMatch(new RegExp(`^taskmaster feed: .*broken\\.ndjson:2: not valid JSON`));
  });

  test('an unreachable master exits 1 with a message naming it', async () => {
    const port = await freePort();
    const f = file('one.json', '[{"module":"ok"}]');
    const r = await run(f, { feeder: { master: `http://127.0.0.1:${port}`, connectTimeoutMs: 300 } });
    expect(r.code).toBe(1);
    expect(r.err).toContain(`cannot reach the master at http://127.0.0.1:${port} within 300 ms`);
  });

  test('through the taskmaster command, a bad file exits with code 2', () => {
    const f = file('cli-broken.ndjson', '{oops}\n');
    const r = spawnSync(process.execPath, [path.join(ROOT, 'bin', 'taskmaster.js'), 'feed', f], {
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('cli-broken.ndjson:1: not valid JSON');
  });
});

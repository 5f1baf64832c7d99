/**
 * Recurring schedules on a real master, runner and database: each slot adds one task
 * `<id>@<slot ISO>`, never before its slot, and it runs; upserts are idempotent (two clients at once
 * make one schedule; the same definition changes nothing; a new one applies from the next slot);
 * unschedule stops it; bad definitions are refused naming the field, from the feeder and over HTTP.
 */
import { execFile } from 'node:child_process';
import { EventEmitter } from 'node:events';
import path from 'node:path';
import { paramsOf, type TaskRecord } from '../../master/task-record';
import type { ScheduleView } from '../../protocol/schedules';
import { ROOT } from '../helpers/cluster';
import { connectTestDb } from '../helpers/db';
import { useCluster } from '../helpers/use-cluster';
import { eventually, waitForEvent } from '../helpers/wait';

const cluster = useCluster({ runners: 1, feeder: true });

interface Added {
  id: string;
  schedule: string;
  slot: number;
  created: number;
  params: unknown[];
  backfilled: boolean;
}

/** Every task the master adds, as it adds it, by schedule. */
class AddLog extends EventEmitter {
  readonly all: Added[] = [];
  of(schedule: string): Added[] {
    return this.all.filter((a) => a.schedule === schedule);
  }
  /** Resolves once `schedule` has `n` tasks. */
  async count(schedule: string, n: number): Promise<Added[]> {
    if (this.of(schedule).length < n)
      await waitForEvent(this, 'added', () => this.of(schedule).length >= n, {
        what: `${n} tasks of schedule ${schedule} (got ${this.of(schedule).length})`,
      });
    return this.of(schedule);
  }
}

let log: AddLog;

/** A JSON answer, read loosely: each test says what it expects of it. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Reply = Record<string, any>;

beforeAll(() => {
  log = new AddLog();
  cluster.master.scheduler.observers.push({
    added(tasks: readonly TaskRecord[]) {
      for (const t of tasks) {
        const at = t.id.lastIndexOf('@');
        if (at < 0) continue;
        log.all.push({
          id: t.id,
          schedule: t.id.slice(0, at),
          slot: Date.parse(t.id.slice(at + 1)),
          created: t.created,
          params: paramsOf(t),
          backfilled: t.backfilled === true,
        });
        log.emit('added');
      }
    },
    changed() {},
    discarded() {},
  });
});

async function http(method: string, path: string, body?: unknown): Promise<{ status: number; body: Reply }> {
  const res = await fetch(`${cluster.url}${path}`, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as Reply };
}

/** Consecutive slots `every` ms apart, each once. */
function expectConsecutive(tasks: Added[], every: number): void {
  const slots = tasks.map((t) => t.slot);
  expect(new Set(tasks.map((t) => t.id)).size).toBe(tasks.length);
  for (let i = 1; i < slots.length; i++) expect(slots[i] - slots[i - 1]).toBe(every);
}

test('every 1000 ms: one task per slot, named after it, never created before it, and each runs', async () => {
  const { outcome, schedule } = await cluster.feeder.schedule({
    id: 'tick',
    every: 1000,
    task: { module: 'ok', params: ['tick'] },
  });
  expect(outcome).toBe('created');
  expect(schedule.nextAt).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.000Z$/);
  const tasks = (await log.count('tick', 3)).slice(0, 3);
  expectConsecutive(tasks, 1000);
  for (const t of tasks) {
    expect(t.id).toBe(`tick@${new Date(t.slot).toISOString()}`);
    expect(t.created).toBeGreaterThanOrEqual(t.slot);
    expect(t.backfilled).toBe(false);
  }
  const outcomes = await cluster.feeder.wait(tasks.map((t) => t.id));
  expect(outcomes.map((o) => [o.state, o.result])).toEqual(tasks.map(() => ['done', ['tick']]));
  const listed = (await cluster.feeder.schedules()).find((s) => s.id === 'tick') as ScheduleView;
  expect(listed.count).toBeGreaterThanOrEqual(3);
  expect(Date.parse(listed.nextAt as string)).toBeGreaterThan(Date.parse(listed.lastSlot as string));
  expect(await cluster.feeder.unschedule('tick')).toBe(true);
});

test('unschedule stops it: no slot of it fires after, while another schedule goes on', async () => {
  await cluster.feeder.schedule({ id: 'gone', every: 500, task: { module: 'ok' } });
  await log.count('gone', 1);
  expect(await cluster.feeder.unschedule('gone')).toBe(true);
  const after = log.of('gone').length;
  // A clock of its own: four slots of another schedule pass (2 s, four of the removed one's).
  await cluster.feeder.schedule({ id: 'clock', every: 500, task: { module: 'ok' } });
  const base = log.of('clock').length;
  await log.count('clock', base + 4);
  expect(log.of('gone')).toHaveLength(after);
  expect((await cluster.feeder.schedules()).map((s) => s.id)).not.toContain('gone');
  expect(await cluster.feeder.unschedule('gone')).toBe(false);
  expect(await cluster.feeder.unschedule('clock')).toBe(true);
});

test('two clients upserting the same schedule at once make one schedule, one task per slot', async () => {
  const other = await cluster.startFeeder();
  const def = { id: 'twice', every: 1000, task: { module: 'ok', params: [1, { a: 1, b: 2 }] } };
  // The second spells the same definition with its keys in another order.
  const same = { task: { params: [1, { b: 2, a: 1 }], module: 'ok' }, every: 1000, id: 'twice' };
  const replies = await Promise.all([cluster.feeder.schedule(def), other.schedule(same)]);
  expect(replies.map((r) => r.outcome).sort()).toEqual(['created', 'unchanged']);
  expect(replies[0].schedule.created).toBe(replies[1].schedule.created);
  expect((await cluster.feeder.schedules()).filter((s) => s.id === 'twice')).toHaveLength(1);
  const conn = await connectTestDb(cluster.dbName);
  try {
    expect(await conn.collection('schedules').countDocuments({ _id: 'twice' as never })).toBe(1);
  } finally {
    await conn.close();
  }
  // Upserting it again from both, as slots fire, changes nothing and never doubles a slot.
  for (let i = 0; i < 3; i++) {
    const again = await Promise.all([cluster.feeder.schedule(same), other.schedule(def)]);
    expect(again.map((r) => [r.outcome, r.schedule.updated])).toEqual([
      ['unchanged', replies[0].schedule.updated],
      ['unchanged', replies[0].schedule.updated],
    ]);
    await log.count('twice', i + 1);
  }
  expectConsecutive(log.of('twice'), 1000);
  await cluster.feeder.unschedule('twice');
});

test('a new definition takes effect from the next slot; slots stay on the schedule, not on when they ran', async () => {
  await cluster.feeder.schedule({ id: 'change', every: 1000, task: { module: 'ok', params: ['v1'] } });
  const before = await log.count('change', 2);
  const changedAt = Date.now();
  const r = await cluster.feeder.schedule({
    id: 'change',
    every: 1000,
    task: { module: 'ok', params: ['v2'] },
  });
  expect(r.outcome).toBe('changed');
  expect(r.schedule.count).toBeGreaterThanOrEqual(2);
  const n = log.of('change').length;
  const tasks = await log.count('change', n + 2);
  expectConsecutive(tasks, 1000);
  for (const t of tasks.slice(before.length)) {
    if (t.slot > changedAt) expect(t.params).toEqual(['v2']);
    else expect(t.params).toEqual(['v1']);
  }
  expect(tasks.filter((t) => t.slot > changedAt).length).toBeGreaterThanOrEqual(2);
  await cluster.feeder.unschedule('change');
});

test('limit: at most that many tasks, then the schedule has no next slot', async () => {
  await cluster.feeder.schedule({ id: 'three', cron: '* * * * * *', limit: 3, task: { module: 'ok' } });
  await log.count('three', 3);
  // Two more seconds of another schedule's slots: none of this one.
  await cluster.feeder.schedule({ id: 'clock2', every: 500, task: { module: 'ok' } });
  await log.count('clock2', 4);
  expect(log.of('three')).toHaveLength(3);
  const s = (await cluster.feeder.schedules()).find((x) => x.id === 'three') as ScheduleView;
  expect(s).toMatchObject({ count: 3, nextAt: null, limit: 3 });
  await cluster.feeder.unschedule('clock2');
  await cluster.feeder.unschedule('three');
});

describe('bad definitions are refused naming the field', () => {
  test.each([
    [{ id: 'b', cron: '61 * * * *', task: { module: 'ok' } }, /cron: .*minute/],
    [{ id: 'b', cron: '* * * *', task: { module: 'ok' } }, /cron: must have 5 or 6 fields/],
    [{ id: 'b', cron: '* * * * *', tz: 'Mars/Olympus', task: { module: 'ok' } }, /tz: unknown time zone/],
    [
      { id: 'b', cron: '* * * * *', every: 1000, task: { module: 'ok' } },
      /every: give cron or every, not both/,
    ],
    [{ id: 'b', task: { module: 'ok' } }, /cron: give cron or every/],
    [{ id: 'a@b', every: 1000, task: { module: 'ok' } }, /id: must not contain "@"/],
  ])('%j', async (def, message) => {
    // The feeder checks what it can before sending; the master checks again (and the cron itself).
    await expect(cluster.feeder.schedule(def as never)).rejects.toThrow(message);
    const { id, ...body } = def;
    const r = await http('PUT', `/api/schedules/${encodeURIComponent(id)}`, body);
    expect(r.status).toBe(400);
    expect(r.body.error.code).toBe('EVALIDATION');
    expect(r.body.error.message).toMatch(message);
    expect((await cluster.feeder.schedules()).map((s) => s.id)).not.toContain(id);
  });

  test('the master refuses a bad cron sent past the feeder, and stays well', async () => {
    const socket = (
      cluster.feeder as unknown as { socket: { emitWithAck(e: string, p: unknown): Promise<Reply> } }
    ).socket;
    const reply = await socket.emitWithAck('schedules:put', {
      id: 'raw',
      cron: '99 * * * *',
      task: { module: 'ok' },
    });
    expect(reply).toMatchObject({ ok: false, error: { code: 'EVALIDATION' } });
    expect(reply.error.message).toMatch(/cron: /);
    const malformed = await socket.emitWithAck('schedules:put', {
      id: 'raw',
      every: 'often',
      task: { module: 'ok' },
    });
    expect(malformed.error.message).toMatch(/every/);
    const [o] = await cluster.feeder.work([{ module: 'ok', params: ['alive'] }]);
    expect(o.result).toEqual(['alive']);
  });
});

test('the HTTP API: PUT creates then changes nothing, GET lists and shows, DELETE removes', async () => {
  const body = { cron: '0 3 * * *', tz: 'Europe/Berlin', task: { module: 'ok', params: [1] } };
  const created = await http('PUT', '/api/schedules/nightly', body);
  expect(created.status).toBe(201);
  expect(created.body).toMatchObject({
    outcome: 'created',
    schedule: { id: 'nightly', misfire: 'once', count: 0 },
  });
  // 03:00 in Berlin is 01:00 or 02:00 UTC.
  expect(created.body.schedule.nextAt).toMatch(/T0[12]:00:00\.000Z$/);
  expect((await http('PUT', '/api/schedules/nightly', body)).body.outcome).toBe('unchanged');
  const mismatch = await http('PUT', '/api/schedules/nightly', { ...body, id: 'other' });
  expect(mismatch.status).toBe(400);
  expect(mismatch.body.error.message).toMatch(/^id: /);
  expect((await http('GET', '/api/schedules')).body.schedules.map((s: ScheduleView) => s.id)).toContain(
    'nightly',
  );
  expect((await http('GET', '/api/schedules/nightly')).body.schedule.tz).toBe('Europe/Berlin');
  expect((await http('DELETE', '/api/schedules/nightly')).status).toBe(200);
  expect((await http('GET', '/api/schedules/nightly')).status).toBe(404);
  expect((await http('DELETE', '/api/schedules/nightly')).status).toBe(404);
});

test('taskmaster schedule add, ls and rm', async () => {
  const cli = (...args: string[]) =>
    new Promise<{ code: number; stdout: string; stderr: string }>((resolve) =>
      execFile(
        process.execPath,
        [path.join(ROOT, 'bin', 'taskmaster.js'), 'schedule', ...args, '--master', cluster.url],
        { timeout: 60_000 },
        (err, stdout, stderr) =>
          resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr }),
      ),
    );
  const add = ['add', 'cli-nightly', '--cron', '0 3 * * *', '--tz', 'Europe/Berlin', '--module', 'ok'];
  const created = await cli(...add, '--params', '["a", 1]', '--misfire', 'all');
  expect(created).toMatchObject({ code: 0, stderr: '' });
  expect(created.stdout).toMatch(/^created cli-nightly: next \d{4}-\d\d-\d\dT0[12]:00:00\.000Z\n$/);
  expect((await cli(...add, '--params', '["a", 1]', '--misfire', 'all')).stdout).toMatch(/^unchanged /);
  const v = (await cluster.feeder.schedules()).find((s) => s.id === 'cli-nightly') as ScheduleView;
  expect(v).toMatchObject({ cron: '0 3 * * *', tz: 'Europe/Berlin', misfire: 'all' });
  expect(v.task).toMatchObject({ module: 'ok', params: ['a', 1] });
  const ls = await cli('ls');
  expect(ls.stdout.split('\n')[0]).toMatch(/^ID\s+WHEN\s+MODULE\s+MISFIRE\s+NEXT\s+LAST\s+COUNT$/);
  expect(ls.stdout).toMatch(/cli-nightly\s+0 3 \* \* \* Europe\/Berlin\s+ok\s+all\s+\S+\s+-\s+0/);
  const bad = await cli('add', 'cli-bad', '--cron', '0 25 * * *', '--module', 'ok');
  expect(bad.code).not.toBe(0);
  expect(bad.stderr).toMatch(/400 EVALIDATION .*cron: /);
  expect(await cli('rm', 'cli-nightly')).toMatchObject({ code: 0, stdout: 'removed cli-nightly\n' });
  expect((await cli('rm', 'cli-nightly')).stderr).toMatch(/404 ENOTFOUND/);
});

test('a restart keeps schedules; a stored definition it cannot read is skipped, and an upsert replaces it', async () => {
  const kept = await cluster.feeder.schedule({ id: 'survivor', every: 500, task: { module: 'ok' } });
  await log.count('survivor', 1);
  const conn = await connectTestDb(cluster.dbName);
  try {
    const now = new Date();
    await conn.collection('schedules').insertOne({
      _id: 'unreadable' as never,
      def: '{"id":"unreadable","cron":"not a cron"}',
      since: now,
      nextAt: null,
      lastSlot: null,
      count: 7,
      created: now,
      updated: now,
      rev: 3,
    });
  } finally {
    await conn.close();
  }
  await cluster.restart();
  const listed = await cluster.feeder.schedules();
  expect(listed.map((s) => s.id)).toContain('survivor');
  expect(listed.map((s) => s.id)).not.toContain('unreadable');
  const after = listed.find((s) => s.id === 'survivor') as ScheduleView;
  expect(after.created).toBe(kept.schedule.created);
  await eventually(async () => {
    const s = (await cluster.feeder.schedules()).find((x) => x.id === 'survivor');
    return s && s.count > after.count;
  });
  const replaced = await cluster.feeder.schedule({ id: 'unreadable', every: 500, task: { module: 'ok' } });
  expect(replaced).toMatchObject({ outcome: 'changed', schedule: { count: 7 } });
  await eventually(async () => {
    const s = (await cluster.feeder.schedules()).find((x) => x.id === 'unreadable');
    return s && s.count > 7;
  });
});

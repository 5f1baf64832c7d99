/**
 * Fair shares across groups, measured: an in-process master on the embedded database (or MONGO_URL)
 * and a protocol-level runner that answers every assignment at once, which records the order of
 * starts exactly. Prints one JSON line per scenario:
 *
 * - `equal`: G groups of N tasks each, all queued (group after group) before the runner connects.
 *   Over the starts made while every group still had tasks waiting: starts per group and Jain's
 *   fairness index, (Σx)² / (G·Σx²), 1 when all are equal, 1/G when one group has them all; also the
 *   lowest index over windows of 10·G consecutive starts. The same load without `group` (one FIFO)
 *   is measured beside it.
 * - `weighted`: two groups of weight 3 and 1: the ratio of their starts while both wait.
 * - `backlog`: one group with B tasks queued, then 10 of another: starts of the first before the
 *   last of the 10 starts.
 *
 *   npm run bench:fairness -- [--groups 10] [--tasks 2000] [--backlog 100000] [--slots 64]
 */
import { parseArgs } from 'node:util';
import { io, type Socket } from 'socket.io-client';
import { silentLogger } from '../common/logger';
import { Master } from '../master/master';
import type { Assignment } from '../protocol/schemas';
import type { Database } from '../db/server';
import { benchDatabase, runBench } from './run';

const { values: args } = parseArgs({
  options: {
    groups: { type: 'string', default: '10' },
    tasks: { type: 'string', default: '2000' },
    backlog: { type: 'string', default: '100000' },
    slots: { type: 'string', default: '64' },
  },
});

interface Spec {
  id: string;
  module: string;
  group?: string;
  priority?: number;
}

/** Adds `batches` in order while no runner is connected, then starts one; resolves with the ids in start order. */
async function run(
  db: Database,
  batches: Spec[][],
  opts: { groupWeights?: Record<string, number>; stopAfter?: (started: string[]) => boolean } = {},
): Promise<{ started: string[]; seconds: number }> {
  const master = new Master({
    mongoUrl: db.url,
    dbName: `bench_fair_${Date.now()}_${Math.floor(Math.random() * 1e6)}`,
    port: 0,
    logger: silentLogger(),
    groupWeights: opts.groupWeights ?? {},
  });
  await master.start();
  const feeder = io(`${master.url}/feeder`, { transports: ['websocket'] });
  let runner: Socket | null = null;
  try {
    for (const batch of batches)
      for (let i = 0; i < batch.length; i += 5000) {
        const reply = (await feeder.emitWithAck('tasks:add', { tasks: batch.slice(i, i + 5000) })) as {
          ok: boolean;
        };
        if (!reply.ok) throw new Error(`add refused: ${JSON.stringify(reply)}`);
      }
    const total = batches.reduce((n, b) => n + b.length, 0);
    const started: string[] = [];
    const t0 = Date.now();
    const r = io(`${master.url}/runner`, { transports: ['websocket'] });
    runner = r;
    const finished = new Promise<void>((resolve) => {
      r.on('task:assign', ({ tasks }: { tasks: Assignment[] }) => {
        const refs = tasks.map((t) => ({ id: t.id, attempt: t.attempt }));
        for (const t of tasks) started.push(t.id);
        if (started.length >= total || opts.stopAfter?.(started)) resolve();
        r.emit('task:started', { tasks: refs });
        r.emit(
          'task:results',
          { results: refs.map((x) => ({ ...x, ok: true, result: null })) },
          () => undefined,
        );
      });
    });
    await r.emitWithAck('runner:hello', { runnerId: 'bench', slots: Number(args.slots), workers: 1 });
    await finished;
    return { started, seconds: (Date.now() - t0) / 1000 };
  } finally {
    runner?.close();
    feeder.close();
    await master.close();
  }
}

const groupOf = (id: string) => id.slice(0, id.indexOf('-'));

/** Jain's fairness index of `xs`. */
function jain(xs: number[]): number {
  const sum = xs.reduce((a, b) => a + b, 0);
  const squares = xs.reduce((a, b) => a + b * b, 0);
  return squares === 0 ? 1 : (sum * sum) / (xs.length * squares);
}

/** Starts per group over the starts made while every group still had tasks waiting. */
function backlogged(started: string[], names: string[], perGroup: number): string[] {
  const counts = new Map(names.map((g) => [g, 0]));
  const window: string[] = [];
  for (const id of started) {
    const g = groupOf(id);
    const n = (counts.get(g) ?? 0) + 1;
    counts.set(g, n);
    // This start took its group's last task: from here on that group no longer waits.
    if (n >= perGroup) break;
    window.push(g);
  }
  return window;
}

function fairness(window: string[], names: string[]) {
  const counts = names.map((g) => window.filter((x) => x === g).length);
  const size = 10 * names.length;
  let lowest = 1;
  for (let i = 0; i + size <= window.length; i += size) {
    const w = window.slice(i, i + size);
    lowest = Math.min(lowest, jain(names.map((g) => w.filter((x) => x === g).length)));
  }
  return {
    starts: window.length,
    perGroup: counts,
    jain: round(jain(counts)),
    lowestJainPer10G: round(lowest),
  };
}

const round = (x: number) => Number(x.toFixed(4));

async function main(): Promise<void> {
  const groups = Number(args.groups);
  const perGroup = Number(args.tasks);
  const backlog = Number(args.backlog);
  const db = await benchDatabase();
  const out = (line: object) => process.stdout.write(`${JSON.stringify(line)}\n`);
  try {
    const names = Array.from({ length: groups }, (_, i) => `g${i}`);
    const make = (g: string, n: number, grouped: boolean): Spec[] =>
      Array.from({ length: n }, (_, i) => ({
        id: `${g}-${i}`,
        module: 'noop',
        ...(grouped ? { group: g } : {}),
      }));

    for (const grouped of [true, false]) {
      const { started, seconds } = await run(
        db,
        names.map((g) => make(g, perGroup, grouped)),
      );
      const window = backlogged(started, names, perGroup);
      out({
        scenario: 'equal',
        groups,
        tasksPerGroup: perGroup,
        group: grouped ? 'set' : 'none (one FIFO)',
        database: db.kind,
        ...fairness(window, names),
        tasksPerSecond: Math.round(started.length / seconds),
      });
    }

    {
      const { started } = await run(db, [make('heavy', 3000, true), make('light', 3000, true)], {
        groupWeights: { heavy: 3 },
      });
      const window = backlogged(started, ['heavy', 'light'], 3000);
      const heavy = window.filter((g) => g === 'heavy').length;
      const light = window.length - heavy;
      out({
        scenario: 'weighted',
        weights: { heavy: 3, light: 1 },
        starts: window.length,
        heavy,
        light,
        ratio: round(heavy / light),
      });
    }

    {
      const small = make('small', 10, true);
      let scanned = 0;
      let smallStarted = 0;
      const { started, seconds } = await run(db, [make('big', backlog, true), small], {
        stopAfter: (s) => {
          for (; scanned < s.length; scanned++) if (s[scanned].startsWith('small-')) smallStarted++;
          return smallStarted >= 10;
        },
      });
      const lastSmall = started.findLastIndex((id) => id.startsWith('small-'));
      out({
        scenario: 'backlog',
        big: backlog,
        small: 10,
        bigStartsBeforeLastSmall: started.slice(0, lastSmall).filter((id) => id.startsWith('big-')).length,
        seconds: Number(seconds.toFixed(2)),
      });
    }
  } finally {
    await db.stop();
  }
}

runBench(main);

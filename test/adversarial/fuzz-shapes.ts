/**
 * The amplification shapes the fuzzer sends after its random round (fuzz.ts): small, legal inputs the
 * master could multiply by the number of dependents, watchers or connections. Each shape is sent
 * through a raw /feeder or /runner socket and then checked: every outcome arrives, none is larger
 * than its bound, and the master did not drop the connection.
 *
 *   chain    a chain of tasks whose root fails with a long message: outcomes stay small (the root
 *            cause is named, not embedded) and their total is linear in the chain's length;
 *   fan-out  one task failing with an 800 KB message and many dependents: no dependent carries it;
 *   watch    one socket watching tens of thousands of unknown ids: one bounded answer;
 *   churn    runners that connect, say hello and go, hundreds of times;
 *   forgery  progress for attempts the reporting runner was never sent (dropped, never forwarded).
 *
 * The honest runner (id `honestRunner`) must have the test fixtures (throws-big, ok) loaded.
 */
import { io, type Socket } from 'socket.io-client';

export interface ShapeOptions {
  url: string;
  token?: string;
  /** Makes ids unique per round: the same master may be fuzzed twice. */
  seed: number;
  honestRunner: string;
  /** Scales the shapes: 1 for a CI round (hundreds of tasks), more for a longer one. */
  scale?: number;
  progress?: (line: string) => void;
}

export interface ShapeReport {
  shape: string;
  tasks: number;
  /** The largest outcome received, as JSON bytes. */
  maxOutcomeBytes: number;
  /** All outcomes received, as JSON bytes. */
  totalBytes: number;
  ms: number;
}

/** An outcome of a dependent never needs more than this: the root cause's id, code and 200 characters. */
export const DEPENDENT_OUTCOME_BOUND = 2048;

const WAIT_MS = 60_000;

function connect(url: string, nsp: string, token?: string): Promise<Socket> {
  const s = io(new URL(nsp, url).href, {
    transports: ['websocket'],
    reconnection: false,
    forceNew: true,
    auth: token ? { token } : {},
    timeout: 5000,
  });
  return new Promise((resolve, reject) => {
    s.once('connect', () => resolve(s));
    s.once('connect_error', (err) => {
      s.close();
      reject(new Error(`cannot connect to ${nsp}: ${err.message}`));
    });
  });
}

/** Adds `tasks` through `s` and collects their outcomes; rejects if the socket drops or time runs out. */
async function addAndCollect(
  s: Socket,
  tasks: Record<string, unknown>[],
  batch: string,
): Promise<{ sizes: Map<string, number> }> {
  const want = new Set(tasks.map((t) => String(t.id)));
  const sizes = new Map<string, number>();
  let finish: (err?: Error) => void = () => undefined;
  const done = new Promise<void>((resolve, reject) => {
    finish = (err) => (err ? reject(err) : resolve());
  });
  const timer = setTimeout(
    () =>
      finish(
        new Error(`${batch}: ${want.size - sizes.size} of ${want.size} outcomes missing after ${WAIT_MS} ms`),
      ),
    WAIT_MS,
  );
  /** Pushed outcomes must come once each; the watch's answer may repeat one pushed already. */
  const take = (outcomes: { id: string }[], pushed: boolean) => {
    for (const o of outcomes) {
      if (!want.has(o.id)) continue;
      if (sizes.has(o.id)) {
        if (pushed) finish(new Error(`${batch}: outcome of ${o.id} delivered twice`));
        continue;
      }
      sizes.set(o.id, Buffer.byteLength(JSON.stringify(o)));
    }
    if (sizes.size === want.size) finish();
  };
  const onOutcomes = (m: { outcomes: { id: string }[] }) => take(m.outcomes, true);
  const onDisconnect = (reason: string) =>
    finish(new Error(`${batch}: the master dropped the feeder (${reason})`));
  s.on('task:outcomes', onOutcomes);
  s.on('disconnect', onDisconnect);
  try {
    // In parts below the add limit; the watch covers outcomes that were final before it.
    for (let i = 0; i < tasks.length; i += 500) {
      const reply = (await s
        .timeout(30_000)
        .emitWithAck('tasks:add', { tasks: tasks.slice(i, i + 500), batch })) as {
        ok: boolean;
        error?: { message: string };
      };
      if (!reply.ok) throw new Error(`${batch}: add refused: ${reply.error?.message}`);
    }
    const watched = (await s.timeout(30_000).emitWithAck('tasks:watch', { ids: [...want] })) as {
      ok: boolean;
      outcomes?: { id: string }[];
    };
    if (watched.ok) take(watched.outcomes ?? [], false);
    await done;
  } finally {
    clearTimeout(timer);
    s.off('task:outcomes', onOutcomes);
    s.off('disconnect', onDisconnect);
  }
  return { sizes };
}

function summary(
  shape: string,
  sizes: Map<string, number>,
  started: number,
  skip: string[] = [],
): ShapeReport {
  const counted = [...sizes].filter(([id]) => !skip.includes(id)).map(([, n]) => n);
  return {
    shape,
    tasks: sizes.size,
    maxOutcomeBytes: Math.max(0, ...counted),
    totalBytes: counted.reduce((a, b) => a + b, 0),
    ms: Date.now() - started,
  };
}

function bounded(r: ShapeReport, max: number): ShapeReport {
  if (r.maxOutcomeBytes > max)
    throw new Error(`${r.shape}: an outcome of ${r.maxOutcomeBytes} bytes (bound ${max})`);
  return r;
}

/** Waits until the task runs (GET /api/tasks/:id), polling: a raw client has no event for it. */
async function untilRunning(opts: ShapeOptions, id: string): Promise<void> {
  const until = Date.now() + WAIT_MS;
  for (;;) {
    const res = await fetch(new URL(`/api/tasks/${encodeURIComponent(id)}`, opts.url), {
      headers: opts.token ? { authorization: `Bearer ${opts.token}` } : {},
    });
    const body = (await res.json()) as { task?: { state?: string }; state?: string };
    const state = body.task?.state ?? body.state;
    if (state === 'running') return;
    if (Date.now() > until) throw new Error(`${id} not running after ${WAIT_MS} ms (state ${state})`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export async function amplificationShapes(opts: ShapeOptions): Promise<ShapeReport[]> {
  const k = Math.max(1, opts.scale ?? 1);
  const tag = `amp${opts.seed}-${Date.now().toString(36)}`;
  const reports: ShapeReport[] = [];
  const say = (r: ShapeReport) =>
    opts.progress?.(
      `${r.shape}: ${r.tasks} tasks, largest outcome ${r.maxOutcomeBytes} B, all ${r.totalBytes} B, ${r.ms} ms`,
    );
  const feeder = await connect(opts.url, '/feeder', opts.token);
  try {
    // chain: root fails with a 100 KB message; each link must name it, not carry it.
    {
      const n = 300 * k;
      const started = Date.now();
      const tasks = Array.from({ length: n }, (_, i) =>
        i === 0
          ? { id: `${tag}-c0`, module: 'throws-big', params: [100 * 1024], runner: opts.honestRunner }
          : { id: `${tag}-c${i}`, module: 'ok', dependencies: [`${tag}-c${i - 1}`] },
      );
      const { sizes } = await addAndCollect(feeder, tasks, `${tag}-chain`);
      const r = bounded(summary('chain', sizes, started, [`${tag}-c0`]), DEPENDENT_OUTCOME_BOUND);
      // Linear: the total is at most the bound per link (quadratic growth would pass it at once).
      if (r.totalBytes > DEPENDENT_OUTCOME_BOUND * (n - 1))
        throw new Error(`chain: outcomes total ${r.totalBytes} bytes for ${n} links`);
      reports.push(r);
      say(r);
    }
    // fan-out: one 800 KB error, many dependents.
    {
      const n = 500 * k;
      const started = Date.now();
      const root = { id: `${tag}-f`, module: 'throws-big', params: [800 * 1024], runner: opts.honestRunner };
      const deps = Array.from({ length: n }, (_, i) => ({
        id: `${tag}-f${i}`,
        module: 'ok',
        dependencies: [root.id],
      }));
      const { sizes } = await addAndCollect(feeder, [root, ...deps], `${tag}-fan`);
      const r = bounded(summary('fan-out', sizes, started, [root.id]), DEPENDENT_OUTCOME_BOUND);
      reports.push(r);
      say(r);
    }
    // watch: tens of thousands of ids nobody added.
    {
      const n = 20_000 * k;
      const started = Date.now();
      const ids = Array.from({ length: n }, (_, i) => `${tag}-w${i}`);
      const reply = (await feeder.timeout(30_000).emitWithAck('tasks:watch', { ids })) as {
        ok: boolean;
        unknown?: string[];
        error?: { code: string };
      };
      // Either watched (all unknown) or refused with a clear code; never a dropped connection.
      if (reply.ok && reply.unknown?.length !== n)
        throw new Error(`watch: ${reply.unknown?.length} of ${n} unknown`);
      if (!feeder.connected) throw new Error('watch: the master dropped the feeder');
      const r: ShapeReport = {
        shape: 'watch',
        tasks: n,
        maxOutcomeBytes: 0,
        totalBytes: 0,
        ms: Date.now() - started,
      };
      reports.push(r);
      opts.progress?.(
        `watch: ${n} unknown ids ${reply.ok ? 'watched' : `refused (${reply.error?.code})`}, ${r.ms} ms`,
      );
    }
    // churn: runners that come, say hello, forge progress for an attempt running on the honest
    // runner, and go. The master passes progress on only from the runner that holds the attempt.
    {
      const n = 200 * k;
      const started = Date.now();
      const victim = `${tag}-victim`;
      const FORGED = 0.123456789;
      const forgedSeen: unknown[] = [];
      const onProgress = (p: { id: string }) => {
        if (p.id === victim) forgedSeen.push(p); // the slow task reports none itself
      };
      feeder.on('task:progress', onProgress);
      const added = (await feeder.timeout(30_000).emitWithAck('tasks:add', {
        tasks: [{ id: victim, module: 'slow', params: [60_000], runner: opts.honestRunner }],
      })) as { ok: boolean; error?: { message: string } };
      if (!added.ok) throw new Error(`churn: add refused: ${added.error?.message}`);
      await untilRunning(opts, victim);
      try {
        for (let i = 0; i < n; i++) {
          const r = await connect(opts.url, '/runner', opts.token);
          await r.timeout(10_000).emitWithAck('runner:hello', {
            runnerId: `${tag}-r${i % 20}`,
            slots: 1,
            workers: 1,
            running: [],
            modules: [],
          });
          // Answered (ESTALE) before the runner goes: the report was handled while it was connected.
          await r
            .timeout(2_000)
            .emitWithAck('task:progress', { id: victim, attempt: 1, progress: FORGED })
            .catch(() => undefined);
          r.close();
          if (forgedSeen.length > 0) break;
        }
        // One honest round trip on the feeder's socket orders after every forged report sent.
        await feeder.timeout(30_000).emitWithAck('tasks:watch', { ids: [victim] });
      } finally {
        feeder.off('task:progress', onProgress);
        await feeder.timeout(30_000).emitWithAck('tasks:cancel', { ids: [victim] });
      }
      const r: ShapeReport = {
        shape: 'churn',
        tasks: n,
        maxOutcomeBytes: 0,
        totalBytes: 0,
        ms: Date.now() - started,
      };
      if (forgedSeen.length > 0)
        throw new Error(`churn: ${forgedSeen.length} of ${n} forged progress reports reached a feeder`);
      reports.push(r);
      opts.progress?.(
        `churn: ${n} hello/disconnect cycles forging progress for a running attempt: none forwarded, ${r.ms} ms`,
      );
    }
  } finally {
    feeder.close();
  }
  return reports;
}

/**
 * A seeded fuzzer for a running master: random payloads — mutations of valid ones and pure noise —
 * to every Socket.IO event on every namespace and to every HTTP route, then the proof that the master
 * is alive and still useful: `/health` answers and an honest add → result round trip works.
 *
 * The same seed gives the same sequence of messages, so a failure can be replayed:
 *   npm run fuzz -- --seed 42 --count 2000
 */
import http from 'node:http';
import { io, type Socket } from 'socket.io-client';

export interface FuzzOptions {
  url: string;
  token?: string;
  seed: number;
  count: number;
  /** Called every `every` messages with a short status line. */
  progress?: (line: string) => void;
}

export interface FuzzReport {
  sent: number;
  socketMessages: number;
  httpRequests: number;
  /** HTTP answers by status. */
  statuses: Record<string, number>;
  /** Acknowledgements received (the rest timed out or were for events without one). */
  acks: number;
  /** Connections the master closed on us (oversized or malformed packets). */
  reconnects: number;
}

/** Events the master listens to, per namespace, with a valid payload to mutate. */
const EVENTS: Record<string, Record<string, () => unknown>> = {
  '/runner': {
    'runner:hello': () => ({ runnerId: `fz-${word()}`, slots: int(1, 4), workers: 1, running: [] }),
    'task:started': () => ({ tasks: [{ id: word(), attempt: int(1, 3) }] }),
    'task:results': () => ({ results: [{ id: word(), attempt: int(1, 3), ok: true, result: value(3) }] }),
    'task:progress': () => ({ id: word(), attempt: 1, progress: Math.random() }),
    'runner:modules': () => ({ modules: [{ name: 'ok', hash: word() }] }),
    'runner:draining': () => undefined,
    'task:release': () => ({ tasks: [{ id: word(), attempt: 1 }] }),
    'tasks:add': () => ({ tasks: [task()] }),
    'sysmsg:send': () => ({ msg: value(2), to: pick([null, 'MASTER', word()]) }),
  },
  '/feeder': {
    'tasks:add': () => ({ tasks: Array.from({ length: int(1, 4) }, task), batch: pick([undefined, word()]) }),
    'tasks:watch': () => ({ ids: [word(), word()] }),
    'tasks:cancel': () => pick([{ ids: [word()] }, { batch: word() }]),
    'sysmsg:send': () => ({ msg: value(2), to: pick([null, 'MASTER', word()]) }),
  },
  '/': {
    'task:request': () => undefined,
    'task:done': () =>
      pick([JSON.stringify({ _id: word(), result: value(2) }), { _id: word(), error: value(1) }]),
    'task:add': () => pick([{ module: 'ok', params: value(2) }, [{ module: 'ok' }, { module: word() }]]),
  },
};

/** Every HTTP route (method and path), with paths that carry parameters. */
const ROUTES: (() => [string, string])[] = [
  () => ['GET', '/health'],
  () => ['GET', '/api/status'],
  () => ['GET', '/api/runners'],
  () => ['GET', `/api/allocations${pick(['', `?runner=${pathPart()}`])}`],
  () => ['GET', `/api/allocations/${pathPart()}`],
  () => ['DELETE', `/api/allocations/${pathPart()}`],
  () => ['POST', `/api/runners/${pathPart()}/${pick(['drain', 'undrain'])}`],
  () => ['GET', '/hostsAvailable'],
  () => [pick(['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS']), `/${pathPart()}/${pathPart()}`],
];

// ---- the seeded generator ------------------------------------------------------------------------

let rand: () => number = Math.random;

/** mulberry32: small, fast, and the same sequence for the same seed on every platform. */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const int = (lo: number, hi: number) => lo + Math.floor(rand() * (hi - lo + 1));
const pick = <T>(list: readonly T[]): T => list[Math.floor(rand() * list.length)];
const FIELDS = [
  'id',
  'module',
  'params',
  'priority',
  'dependencies',
  'tasks',
  'batch',
  'attempt',
  'ok',
  'result',
  'error',
  'runnerId',
  'slots',
  'workers',
  'running',
  'timeout',
  'runTimeout',
  'assignTimeout',
  'requires',
  'affinity',
  'broadcast',
  'runner',
  'key',
  'backoff',
  'maxAttempts',
  '_id',
  '__proto__',
  'constructor',
  'toString',
  'ids',
  'msg',
  'to',
  'modules',
  'progress',
  'data',
];
const STRINGS = [
  '',
  'ok',
  'throws',
  '../etc/passwd',
  '/abs',
  'a/../b',
  'x'.repeat(300),
  '%',
  '%E0%A4%A',
  '\u0000',
  '𝄞',
  'legacy-x',
  'MASTER',
  'constructor',
  '__proto__',
  'NaN',
];
const NUMBERS = [0, -1, 1, 1.5, 2 ** 31, 2 ** 31 - 1, 2 ** 53, -(2 ** 53), 1e308, -0, 3];

function word(): string {
  return rand() < 0.7 ? `w${int(0, 40)}` : pick(STRINGS);
}

function value(depth: number): unknown {
  const r = rand();
  if (depth <= 0 || r < 0.45) {
    return pick<() => unknown>([
      () => pick(NUMBERS),
      () => word(),
      () => rand() < 0.5,
      () => null,
      () => undefined,
    ])();
  }
  if (r < 0.7) return Array.from({ length: int(0, 4) }, () => value(depth - 1));
  const o: Record<string, unknown> = {};
  for (let i = int(0, 4); i > 0; i--) o[pick(FIELDS)] = value(depth - 1);
  return o;
}

function task(): unknown {
  const t: Record<string, unknown> = { module: pick(['ok', 'ok', 'throws', 'nope', '../x', word()]) };
  if (rand() < 0.5) t.params = value(2);
  if (rand() < 0.3) t.id = word();
  if (rand() < 0.2) t.dependencies = [word()];
  if (rand() < 0.2) t[pick(FIELDS)] = value(2);
  if (rand() < 0.1) t.runTimeout = pick(NUMBERS);
  return t;
}

/** A valid payload with one part replaced by noise, or noise altogether. */
function mutate(valid: unknown): unknown {
  const r = rand();
  if (r < 0.2) return value(3);
  if (r < 0.3) return valid;
  if (valid && typeof valid === 'object' && !Array.isArray(valid)) {
    const o = { ...(valid as Record<string, unknown>) };
    const keys = Object.keys(o);
    if (keys.length > 0 && rand() < 0.6) o[pick(keys)] = value(3);
    else o[pick(FIELDS)] = value(3);
    if (rand() < 0.1) delete o[pick(keys)];
    return o;
  }
  return rand() < 0.5 ? value(2) : valid;
}

function pathPart(): string {
  return pick([
    () => word(),
    () => encodeURIComponent(word()),
    () => pick(['%', '%ZZ', '%E0%A4%A', '%%', '..', '%2e%2e', '%00', '%C0%AF']),
    () => 'x'.repeat(int(1, 3000)),
  ])();
}

// ---- sending --------------------------------------------------------------------------------------

export async function fuzz(opts: FuzzOptions): Promise<FuzzReport> {
  rand = seeded(opts.seed);
  const report: FuzzReport = {
    sent: 0,
    socketMessages: 0,
    httpRequests: 0,
    statuses: {},
    acks: 0,
    reconnects: 0,
  };
  const sockets = new Map<string, Socket>();
  const pending = new Set<Promise<void>>();
  const track = (p: Promise<void>) => {
    pending.add(p);
    void p.finally(() => pending.delete(p));
  };

  const socketOf = async (nsp: string): Promise<Socket | null> => {
    const known = sockets.get(nsp);
    if (known?.connected) return known;
    if (known) report.reconnects++;
    known?.close();
    const s = io(new URL(nsp, opts.url).href, {
      transports: ['websocket'],
      reconnection: false,
      forceNew: true,
      auth: opts.token ? { token: opts.token } : {},
      query: opts.token ? { token: opts.token } : {},
      timeout: 5000,
    });
    const ok = await new Promise<boolean>((resolve) => {
      s.once('connect', () => resolve(true));
      s.once('connect_error', () => resolve(false));
    });
    if (!ok) {
      s.close();
      return null;
    }
    sockets.set(nsp, s);
    return s;
  };

  try {
    for (let i = 0; i < opts.count; i++) {
      if (rand() < 0.75) {
        const nsp = pick(Object.keys(EVENTS));
        const events = EVENTS[nsp];
        // Now and then an event nobody listens to.
        const event = rand() < 0.05 ? `fz:${word()}` : pick(Object.keys(events));
        const payload = mutate(events[event]?.() ?? value(2));
        const s = await socketOf(nsp);
        if (!s)
          throw new Error(`cannot connect to ${nsp} after ${report.sent} messages: is the master alive?`);
        report.socketMessages++;
        if (rand() < 0.03) {
          // Nesting the client's encoder could not even send (it recurses): a hand-written packet.
          const depth = int(50, 20_000);
          const deep = `${'['.repeat(depth)}1${']'.repeat(depth)}`;
          const body =
            nsp === '/' ? `{"module":"ok","params":${deep}}` : `{"tasks":[{"module":"ok","params":${deep}}]}`;
          const prefix = nsp === '/' ? '' : `${nsp},`;
          s.io.engine.write(`2${prefix}[${JSON.stringify(event)},${body}]`);
        } else if (rand() < 0.6) {
          track(
            s
              .timeout(1000)
              .emitWithAck(event, payload)
              .then(
                () => void report.acks++,
                () => undefined,
              ),
          );
        } else if (payload === undefined) s.emit(event);
        else s.emit(event, payload);
      } else {
        const [method, path] = pick(ROUTES)();
        const headers: Record<string, string> = {};
        if (opts.token && rand() < 0.8) headers.authorization = `Bearer ${opts.token}`;
        if (rand() < 0.1) headers.origin = pick(['http://evil.example', 'null', new URL(opts.url).origin]);
        report.httpRequests++;
        track(
          request(opts.url, method, path, headers, rand() < 0.3 ? JSON.stringify(value(3)) : undefined).then(
            (status) => void (report.statuses[status] = (report.statuses[status] ?? 0) + 1),
          ),
        );
      }
      report.sent++;
      // Bounded in flight: the master is the one under test, not the client's memory.
      if (pending.size >= 64) await Promise.race(pending);
      if ((i + 1) % 500 === 0) {
        await Promise.all(pending);
        const health = await request(opts.url, 'GET', '/health', {});
        if (health !== 200) throw new Error(`/health answered ${health} after ${i + 1} messages`);
        opts.progress?.(`${i + 1}/${opts.count} sent, health ok`);
      }
    }
    await Promise.all(pending);
  } finally {
    for (const s of sockets.values()) s.close();
  }
  return report;
}

/** One HTTP request; resolves with the status (0: no answer, connection reset; -1: not sendable). */
function request(
  base: string,
  method: string,
  path: string,
  headers: Record<string, string>,
  body?: string,
): Promise<number> {
  const u = new URL(base);
  return new Promise((resolve) => {
    let req: http.ClientRequest;
    try {
      req = http.request({ host: u.hostname, port: u.port, method, path, headers, agent: false }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      });
    } catch {
      // Node's client refuses to send some paths (unescaped characters): counted as -1.
      return resolve(-1);
    }
    req.setTimeout(5000, () => req.destroy());
    req.on('error', () => resolve(0));
    req.end(body);
  });
}

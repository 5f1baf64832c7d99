/**
 * What every adversarial test stands on: a real master (own database on the run's server, port 0,
 * optionally with a token), a real runner on the fixtures, and the closing proof that the attack
 * left the master alive and useful — `/health` answers and an honest add → result round trip works.
 */
import http from 'node:http';
import net from 'node:net';
import { io, type Socket } from 'socket.io-client';
import type { MasterOptions } from '../../master/options';
import { startFeeder, startRunner } from '../helpers/clients';
import { useCluster, type TestCluster } from '../helpers/use-cluster';

/** Long enough that tokens pass the beyond-loopback rule too. */
export const TOKEN = 'adversarial-test-token-0123456789';

export interface AttackedCluster extends TestCluster {
  /** Health, then one honest task through a runner of its own; fails the test if either does not work. */
  assertAlive(): Promise<void>;
}

/**
 * useCluster for an attack: no runner or feeder of its own (tests start theirs, with the master's
 * token, waiting up to 20 s on a busy machine and not watching the fixtures), and the closing proof.
 */
export function useAttackedCluster(masterOptions: Partial<MasterOptions> = {}): AttackedCluster {
  const c = useCluster({
    masterOptions,
    runnerOptions: { watch: false, startTimeoutMs: 20_000 },
    feederOptions: { connectTimeoutMs: 20_000 },
  });
  let probes = 0;
  return Object.assign(c, {
    assertAlive: () => assertMasterAlive(c.url, masterOptions.token, ++probes),
  });
}

/**
 * The closing proof of an attack on the master at `url` (in-process or its own process): `/health`
 * answers 200, and one honest task goes through a runner and a feeder of its own.
 */
export async function assertMasterAlive(url: string, token?: string, probe = 1): Promise<void> {
  const health = await httpRequest(url, { path: '/health' });
  if (health.status !== 200) throw new Error(`/health answered ${health.status}: the master is not alive`);
  // A runner of its own, pinned by id: the test's own runners may be stopped or wedged on purpose.
  const id = `honest-${process.pid}-${probe}-${Date.now().toString(36)}`;
  const r = await startRunner(url, { token, watch: false, startTimeoutMs: 20_000, runnerId: id });
  const f = await startFeeder(url, { token, connectTimeoutMs: 20_000 });
  try {
    const [o] = await f.work([{ module: 'ok', params: ['alive', probe], runner: id, timeout: 20_000 }]);
    if (o.state !== 'done' || JSON.stringify(o.result) !== JSON.stringify(['alive', probe]))
      throw new Error(`honest round trip failed after the attack: ${JSON.stringify(o)}`);
  } finally {
    await f.close();
    await r.close();
  }
}

export interface HttpAnswer {
  status: number;
  body: string;
  json(): { error?: { code: string; message: string } } & Record<string, unknown>;
}

/** One HTTP request with node:http (the path is sent as given, unnormalised). */
export function httpRequest(
  base: string,
  opts: {
    path: string;
    method?: string;
    headers?: Record<string, string>;
    body?: string;
    /** Bound on the answer. Default 10 s. */
    timeoutMs?: number;
  },
): Promise<HttpAnswer> {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: u.hostname,
        port: u.port,
        path: opts.path,
        method: opts.method ?? 'GET',
        headers: opts.headers,
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, body, json: () => JSON.parse(body) as never }),
        );
      },
    );
    const within = opts.timeoutMs ?? 10_000;
    req.setTimeout(within, () =>
      req.destroy(new Error(`no HTTP answer to ${opts.path} within ${within / 1000} s`)),
    );
    req.on('error', reject);
    req.end(opts.body);
  });
}

/** Writes `text` on a raw TCP connection and resolves with everything the server sent before closing. */
export function rawHttp(base: string, text: string): Promise<string> {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    const sock = net.connect(Number(u.port), u.hostname, () => sock.end(text));
    let out = '';
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => (out += d));
    sock.on('close', () => resolve(out));
    sock.on('error', reject);
    sock.setTimeout(10_000, () => sock.destroy(new Error('no answer within 10 s')));
  });
}

/** A raw Socket.IO client on `nsp`, resolved once connected (rejects with the connect error). */
export async function rawSocket(
  url: string,
  nsp: string,
  opts: { token?: string; query?: Record<string, string>; extraHeaders?: Record<string, string> } = {},
): Promise<Socket> {
  const s = io(new URL(nsp, url).href, {
    transports: ['websocket'],
    reconnection: false,
    forceNew: true,
    auth: opts.token ? { token: opts.token } : {},
    query: opts.query,
    extraHeaders: opts.extraHeaders,
    timeout: 10_000,
  });
  await new Promise<void>((resolve, reject) => {
    s.once('connect', () => resolve());
    s.once('connect_error', (err) => {
      s.close();
      reject(err);
    });
  });
  return s;
}

/** The connect error a client gets on `nsp` (fails the test if it connects). */
export async function connectError(
  url: string,
  nsp: string,
  opts: Parameters<typeof rawSocket>[2] = {},
): Promise<Error> {
  try {
    const s = await rawSocket(url, nsp, opts);
    s.close();
  } catch (err) {
    return err as Error;
  }
  throw new Error(`connected to ${nsp} although it should have been refused`);
}

let rawAckId = 1_000_000;

/**
 * Emits `event` as a hand-written Socket.IO packet, bypassing the client's encoder (which recurses
 * over the payload and cannot even send what an attacker can: a payload nested 10,000 deep).
 * With `ack`, resolves with the acknowledgement.
 */
export function emitRaw(socket: Socket, event: string, payloadJson: string, ack = false): Promise<unknown> {
  const nsp = (socket as unknown as { nsp: string }).nsp;
  const id = ack ? ++rawAckId : undefined;
  const reply = new Promise<unknown>((resolve, reject) => {
    if (id === undefined) return resolve(undefined);
    const timer = setTimeout(() => reject(new Error(`no acknowledgement of ${event} within 10 s`)), 10_000);
    (socket as unknown as { acks: Record<number, (v: unknown) => void> }).acks[id] = (v) => {
      clearTimeout(timer);
      resolve(v);
    };
  });
  const prefix = nsp === '/' ? '' : `${nsp},`;
  socket.io.engine.write(`2${prefix}${id ?? ''}[${JSON.stringify(event)},${payloadJson}]`);
  return reply;
}

/** JSON text of an array nested `depth` levels deep (JSON.stringify itself would overflow). */
export function nestedJson(depth: number): string {
  return `${'['.repeat(depth)}1${']'.repeat(depth)}`;
}

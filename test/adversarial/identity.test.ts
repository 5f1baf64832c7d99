/**
 * Runner identity and forged results, against a real master with a token: a runner id belongs to the
 * connection that holds it, and a result counts only from that connection, for the attempt running now.
 */
import type { Socket } from 'socket.io-client';
import { connectError, rawSocket, useAttackedCluster, TOKEN, type AttackedCluster } from './cluster';
import { rawFeeder, rawRunner, type RawRunner } from '../helpers/raw-clients';
import { waitForEvent } from '../helpers/wait';
import { NAMESPACES } from '../../protocol/events';

interface HelloReply {
  ok: boolean;
  error?: { code: string; message: string };
}

const hello = (runnerId: string, slots = 2) => ({ runnerId, slots, workers: 1 });

describe('adversarial: runner identity', () => {
  const sockets: Socket[] = [];
  const raws: RawRunner[] = [];

  const c = useAttackedCluster({
    token: TOKEN,
    // A failed attempt waits out a long backoff: a forged result must not finish it meanwhile.
    retryBackoff: { type: 'fixed', delay: 60_000, jitter: false },
  });
  afterEach(() => {
    for (const s of sockets.splice(0)) s.close();
    for (const r of raws.splice(0)) r.close();
  });

  const runnerSocketOn = (nsp: string) => rawSocket(c.master.url, nsp, { token: TOKEN });
  const runnerSocket = async () => {
    const s = await rawSocket(c.master.url, '/runner', { token: TOKEN });
    sockets.push(s);
    return s;
  };

  test('every namespace checks the token on its own: each refuses a missing or wrong one with EAUTH and takes the right one', async () => {
    for (const nsp of Object.values(NAMESPACES)) {
      const missing = (await connectError(c.master.url, nsp)) as Error & { data?: { code?: string } };
      expect({ nsp, code: missing.data?.code }).toEqual({ nsp, code: 'EAUTH' });
      // In the connect packet (auth), where the handshake carries none: the namespace's own check.
      const wrong = (await connectError(c.master.url, nsp, { token: 'wrong' })) as Error & {
        data?: { code?: string };
      };
      expect({ nsp, code: wrong.data?.code }).toEqual({ nsp, code: 'EAUTH' });
      (await runnerSocketOn(nsp)).close();
    }
    await c.assertAlive();
  });

  test('a second connection claiming a live runner id is refused with ERUNNERID; the honest runner keeps its work', async () => {
    const honest = await c.startRunner({ runnerId: 'honest-a' });
    const impostor = await runnerSocket();
    const reply = (await impostor.emitWithAck('runner:hello', hello('honest-a', 1000))) as HelloReply;
    expect(reply).toMatchObject({ ok: false, error: { code: 'ERUNNERID' } });
    // The impostor's results for the honest runner's attempts are not taken.
    const f = await c.startFeeder();
    const [ref] = await f.add([{ id: 'idn-slow', module: 'slow', params: [1500], runner: 'honest-a' }]);
    const started = await nextEventOfMaster(c, 'task:started', (rid) => rid === 'honest-a');
    expect(started).toBe('honest-a');
    const forged = (await impostor.emitWithAck('task:results', {
      results: [{ id: ref.id, attempt: 1, ok: true, result: 'forged' }],
    })) as { ok: boolean };
    expect(forged.ok).toBe(false);
    // The impostor leaves: the honest runner is still registered and gets work.
    impostor.close();
    const [o] = await Promise.all([f.outcome(ref.id)]);
    expect(o).toMatchObject({ state: 'done', result: { waited: 1500 } });
    expect(c.master.scheduler.runners.get('honest-a')?.connected).toBe(true);
    const [again] = await f.work([{ module: 'ok', params: ['still'], runner: 'honest-a' }]);
    expect(again).toMatchObject({ state: 'done', result: ['still'] });
    await honest.close();
    await c.assertAlive();
  });

  test('a runner whose id is still held (its old connection not yet seen closed) retries and gets it once that one is gone', async () => {
    const old = await runnerSocket();
    expect(await old.emitWithAck('runner:hello', hello('rejoin'))).toMatchObject({ ok: true });
    const refused = nextEventOfMaster(c, 'runner:refused', (rid) => rid === 'rejoin');
    let started = false;
    const runner = c.startRunner({ runnerId: 'rejoin', reconnectDelayMs: 50, reconnectDelayMaxMs: 200 });
    void runner.then(() => (started = true));
    // Refused (twice: it retries) while the old connection holds the id…
    await refused;
    await nextEventOfMaster(c, 'runner:refused', (rid) => rid === 'rejoin');
    expect(started).toBe(false);
    old.close();
    // …and accepted once it is gone.
    const r = await runner;
    const f = await c.startFeeder();
    expect(await f.work([{ module: 'ok', params: ['back'], runner: 'rejoin' }])).toMatchObject([
      { state: 'done', result: ['back'] },
    ]);
    await r.close();
    await c.assertAlive();
  });

  test('one connection is one runner: a second hello with another id is refused, and the first id goes away with the socket', async () => {
    const s = await runnerSocket();
    expect(await s.emitWithAck('runner:hello', hello('one-a', 1000))).toMatchObject({ ok: true });
    expect(await s.emitWithAck('runner:hello', hello('one-b', 1000))).toMatchObject({
      ok: false,
      error: { code: 'ERUNNERID' },
    });
    expect(c.master.scheduler.runners.get('one-b')).toBeUndefined();
    const down = nextEventOfMaster(c, 'runner:down', (rid) => rid === 'one-a');
    s.close();
    await down;
    expect(c.master.scheduler.runners.get('one-a')?.connected).not.toBe(true);
    await c.assertAlive();
  });

  test('a result from a connection the attempt was not sent to is stale; the running attempt still finishes', async () => {
    const a = await rawRunner(c.master.url, { runnerId: 'res-a', slots: 1 }, { token: TOKEN });
    const b = await rawRunner(c.master.url, { runnerId: 'res-b', slots: 1 }, { token: TOKEN });
    raws.push(a, b);
    const f = await rawFeeder(c.master.url, { token: TOKEN });
    try {
      expect(await f.add([{ id: 'res-1', module: 'ok', runner: 'res-a' }])).toMatchObject({ ok: true });
      await a.until(() => a.assigned.some((x) => x.id === 'res-1'));
      const forged = await b.finish([{ id: 'res-1', attempt: 1, ok: true, result: 'forged' }]);
      expect(forged).toMatchObject({ ok: true, accepted: 0, stale: 1 });
      expect(c.master.scheduler.tasks.get('res-1')?.state).not.toBe('done');
      expect(await a.finish([{ id: 'res-1', attempt: 1, ok: true, result: 'honest' }])).toMatchObject({
        accepted: 1,
      });
      await f.until(() => f.outcomes.has('res-1'));
      expect(f.outcomes.get('res-1')).toMatchObject({ state: 'done', result: 'honest' });
    } finally {
      f.close();
    }
    await c.assertAlive();
  });

  test('a result for a task waiting out its retry backoff is stale (it runs nowhere)', async () => {
    const a = await rawRunner(c.master.url, { runnerId: 'backoff-a', slots: 1 }, { token: TOKEN });
    raws.push(a);
    const f = await rawFeeder(c.master.url, { token: TOKEN });
    try {
      expect(await f.add([{ id: 'bo-1', module: 'ok', runner: 'backoff-a', maxAttempts: 3 }])).toMatchObject({
        ok: true,
      });
      await a.until(() => a.assigned.some((x) => x.id === 'bo-1'));
      await a.finish([{ id: 'bo-1', attempt: 1, ok: false, error: { code: 'ETASK', message: 'first try' } }]);
      expect(c.master.scheduler.tasks.get('bo-1')?.state).toBe('ready');
      const forged = await a.finish([{ id: 'bo-1', attempt: 1, ok: true, result: 'forged' }]);
      expect(forged).toMatchObject({ accepted: 0, stale: 1 });
      expect(c.master.scheduler.tasks.get('bo-1')).toMatchObject({ state: 'ready', attempts: 1 });
      // Nor may a hello adopt it as "still running here".
      const s = await runnerSocket();
      const reply = (await s.emitWithAck('runner:hello', {
        ...hello('backoff-b'),
        running: [{ id: 'bo-1', attempt: 1 }],
      })) as { ok: boolean; drop: unknown[] };
      expect(reply).toMatchObject({ ok: true, drop: [{ id: 'bo-1', attempt: 1 }] });
      expect(c.master.scheduler.tasks.get('bo-1')).toMatchObject({ state: 'ready', who: null });
      expect(await f.socket.emitWithAck('tasks:cancel', { ids: ['bo-1'] })).toMatchObject({ ok: true });
    } finally {
      f.close();
    }
    await c.assertAlive();
  });
});

async function nextEventOfMaster(
  c: AttackedCluster,
  event: string,
  test: (rid: string) => boolean,
): Promise<string> {
  const [rid] = await waitForEvent<[string]>(c.master, event, test);
  return rid;
}

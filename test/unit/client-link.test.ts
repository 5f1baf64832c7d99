/**
 * The client link shared by the runner and the feeder, against a real Socket.IO server on port 0:
 * a refused token is recognised by the code the master sends (not by the words of its message), a
 * feeder-style link stops while a runner-style one keeps retrying, and a master that closes the
 * socket on purpose is reconnected to. With several URLs: a standby's refusal (ESTANDBY) is followed
 * to the master it names, a dead URL is passed over, and a role's listeners outlive the move.
 * (Real masters, active and standby, are test/integration/standby-clients.test.ts's.)
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Server } from 'socket.io';
import { ClientLink, type ClientLinkOptions } from '../../common/client-link';
import { freePort } from '../../db/server';
import { capturingLogger } from '../helpers/capture';

jest.setTimeout(20_000);

/** A server whose /ns middleware refuses as `refuse` says while it is set. */
async function server(): Promise<{
  url: string;
  io: Server;
  refuse: { with: ((next: (err?: Error) => void) => void) | null };
  close(): Promise<void>;
}> {
  const httpServer = http.createServer();
  const io = new Server(httpServer);
  const refuse: { with: ((next: (err?: Error) => void) => void) | null } = { with: null };
  io.of('/ns').use((_s, next) => (refuse.with ? refuse.with(next) : next()));
  await new Promise<void>((r) => httpServer.listen(0, '127.0.0.1', r));
  const { port } = httpServer.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    io,
    refuse,
    close: () => new Promise((r) => io.close(() => r())),
  };
}

/** As master/auth.ts refuses: the message, and the stable code in `data`. */
function eauth(next: (err?: Error) => void): void {
  const err = new Error('EAUTH: missing or wrong token') as Error & { data?: unknown };
  err.data = { code: 'EAUTH', message: 'missing or wrong token' };
  next(err);
}

/** As a standby refuses: ESTANDBY, and the active master's URL (null while none is known). */
function estandby(active: string | null) {
  return (next: (err?: Error) => void): void => {
    const err = new Error('ESTANDBY: this master is a standby') as Error & { data?: unknown };
    err.data = { code: 'ESTANDBY', message: 'this master is a standby', active, epoch: 1 };
    next(err);
  };
}

function link(url: string | string[], opts: Partial<ClientLinkOptions> = {}) {
  const { logger, lines } = capturingLogger();
  const l = new ClientLink({
    master: url,
    namespace: '/ns',
    role: 'feeder',
    reconnectDelayMs: 20,
    reconnectDelayMaxMs: 50,
    autoConnect: true,
    retryRefused: false,
    logger,
    ...opts,
  });
  return { link: l, lines };
}

/** Resolves on the link's next `event`, or rejects naming it after `ms`. */
function next(l: ClientLink, event: 'connect' | 'refused' | 'disconnect', ms = 5000): Promise<unknown[]> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no '${event}' from the link within ${ms} ms`)), ms);
    l.once(event, (...args: unknown[]) => {
      clearTimeout(timer);
      resolve(args);
    });
  });
}

describe('client link', () => {
  test('a refusal carrying code EAUTH fails whenConnected at once, names the role, and stops the link', async () => {
    const s = await server();
    s.refuse.with = eauth;
    const { link: l, lines } = link(s.url);
    try {
      const started = Date.now();
      await expect(l.whenConnected(10_000)).rejects.toMatchObject({
        code: 'EAUTH',
        message: `the master at ${s.url} refused the feeder: missing or wrong token`,
      });
      expect(Date.now() - started).toBeLessThan(5000);
      expect(lines).toContainEqual(
        expect.objectContaining({ level: 'error', message: 'the master refused the handshake' }),
      );
      // Stopped for good: the server would now accept, but no retry comes.
      s.refuse.with = null;
      await expect(next(l, 'connect', 300)).rejects.toThrow("no 'connect'");
      await expect(l.whenConnected(10_000)).rejects.toMatchObject({ code: 'EAUTH' });
    } finally {
      l.close();
      await s.close();
    }
  });

  test('a refusal that only mentions EAUTH in its message is not a refused token: the link keeps retrying', async () => {
    const s = await server();
    let refusals = 0;
    s.refuse.with = (n) => {
      if (++refusals === 3) s.refuse.with = null;
      n(new Error('EAUTH: missing or wrong token'));
    };
    const { link: l } = link(s.url);
    const refused = jest.fn();
    l.on('refused', refused);
    try {
      await l.whenConnected(5000);
      expect(refusals).toBe(3);
      expect(refused).not.toHaveBeenCalled();
    } finally {
      l.close();
      await s.close();
    }
  });

  test('with retryRefused, each refusal is reported and the link connects once the token is accepted', async () => {
    const s = await server();
    s.refuse.with = eauth;
    const { link: l } = link(s.url, { role: 'runner', autoConnect: false, retryRefused: true });
    try {
      const refused = next(l, 'refused');
      l.open();
      const [err] = (await refused) as [Error];
      expect(err.message).toBe(`the master at ${s.url} refused the runner: missing or wrong token`);
      await next(l, 'refused');
      const connected = next(l, 'connect');
      s.refuse.with = null;
      await connected;
      expect(l.refusal).toBeNull();
    } finally {
      l.close();
      await s.close();
    }
  });

  test('a socket the master disconnects on purpose is reconnected, with a warning', async () => {
    const s = await server();
    const { link: l, lines } = link(s.url);
    try {
      await l.whenConnected(5000);
      const down = next(l, 'disconnect');
      const again = next(l, 'connect');
      for (const socket of await s.io.of('/ns').fetchSockets()) socket.disconnect(true);
      expect(await down).toEqual(['io server disconnect']);
      await again;
      expect(lines).toContainEqual(
        expect.objectContaining({
          level: 'warn',
          message: 'disconnected from the master',
          reason: 'io server disconnect',
        }),
      );
    } finally {
      l.close();
      await s.close();
    }
  });

  test('each refusal in a row waits longer before the next try: the delay grows from the base toward the cap', async () => {
    const s = await server();
    const base = 20;
    const cap = 400;
    // When each try reached the master's middleware (refused every time).
    const tries: number[] = [];
    s.refuse.with = (next) => {
      tries.push(performance.now());
      eauth(next);
    };
    const { link: l, lines } = link(s.url, {
      role: 'runner',
      autoConnect: false,
      retryRefused: true,
      reconnectDelayMs: base,
      reconnectDelayMaxMs: cap,
    });
    try {
      l.open();
      for (let i = 0; i < 10; i++) await next(l, 'refused');
      l.close();
      const delays = lines
        .filter((x) => x.message === 'reconnecting to the master')
        .map((x) => x.delayMs as number);
      expect(delays.length).toBeGreaterThanOrEqual(9);
      // Retry n waits within [base, min(cap, base * 2^n)], and really waits that long.
      delays.forEach((d, n) => {
        expect(d).toBeGreaterThanOrEqual(base);
        expect(d).toBeLessThanOrEqual(Math.min(cap, base * 2 ** n));
      });
      for (let n = 0; n + 1 < tries.length && n < delays.length; n++)
        expect(tries[n + 1] - tries[n]).toBeGreaterThanOrEqual(delays[n] - 1);
      // A delay that never grows stays at the base; a growing one leaves it (all nine at or under
      // twice the base: less than one chance in 10^8).
      expect(Math.max(...delays)).toBeGreaterThan(2 * base);
    } finally {
      l.close();
      await s.close();
    }
  });

  test('close() fails a pending whenConnected and is safe twice', async () => {
    const { link: l } = link('http://127.0.0.1:9', { autoConnect: false });
    const pending = l.whenConnected(10_000);
    l.close();
    l.close();
    await expect(pending).rejects.toThrow('the feeder was closed');
    await expect(l.whenConnected(10)).rejects.toThrow('the feeder is closed');
  });

  test('a standby is followed to the active master it names, listed or not, with one info line', async () => {
    const standby = await server();
    const active = await server();
    standby.refuse.with = estandby(active.url);
    const { link: l, lines } = link([standby.url]);
    try {
      await l.whenConnected(5000);
      expect(l.url).toBe(active.url);
      expect((await active.io.of('/ns').fetchSockets()).length).toBe(1);
      const follows = lines.filter(
        (x) => x.message === 'the master is a standby; following the active master',
      );
      expect(follows).toEqual([
        expect.objectContaining({ level: 'info', master: standby.url, active: active.url }),
      ]);
    } finally {
      l.close();
      await standby.close();
      await active.close();
    }
  });

  test('a standby naming an address the client cannot reach does not hold it: the rest of the list is tried', async () => {
    const standby = await server();
    standby.refuse.with = estandby(`http://127.0.0.1:${await freePort()}`);
    const up = await server();
    const { link: l } = link([standby.url, up.url]);
    try {
      await l.whenConnected(5000);
      expect(l.url).toBe(up.url);
    } finally {
      l.close();
      await standby.close();
      await up.close();
    }
  });

  test('a dead first URL and a standby that knows no active master are passed over for the next', async () => {
    const dead = `http://127.0.0.1:${await freePort()}`;
    const electing = await server();
    electing.refuse.with = estandby(null);
    const up = await server();
    const { link: l, lines } = link([dead, electing.url, up.url]);
    try {
      await l.whenConnected(5000);
      expect(l.url).toBe(up.url);
      expect(lines).toContainEqual(
        expect.objectContaining({
          level: 'warn',
          message: 'cannot reach the master; retrying',
          master: dead,
        }),
      );
      expect(lines).toContainEqual(
        expect.objectContaining({
          message: 'the master is a standby and knows no active master yet; trying the next',
          master: electing.url,
        }),
      );
    } finally {
      l.close();
      await electing.close();
      await up.close();
    }
  });

  test('when its master is lost the link goes on to the next, and the listeners on its socket still hear', async () => {
    const first = await server();
    const second = await server();
    const { link: l } = link([first.url, second.url]);
    const heard: string[] = [];
    l.socket.on('note', (from: string) => heard.push(from));
    try {
      await l.whenConnected(5000);
      expect(l.url).toBe(first.url);
      first.io.of('/ns').emit('note', 'first');
      const again = next(l, 'connect');
      // The first master goes away for good: its sockets close, and it refuses new ones.
      await first.close();
      await again;
      expect(l.url).toBe(second.url);
      const noted = new Promise((r) => l.socket.once('note', r));
      second.io.of('/ns').emit('note', 'second');
      await noted;
      expect(heard).toEqual(['first', 'second']);
    } finally {
      l.close();
      await second.close();
    }
  });

  test('whenConnected names every master it tried and the last error', async () => {
    const a = `http://127.0.0.1:${await freePort()}`;
    const b = `http://127.0.0.1:${await freePort()}`;
    const { link: l } = link([a, b]);
    try {
      await expect(l.whenConnected(300)).rejects.toThrow(
        `cannot reach the masters at ${a}, ${b} within 300 ms`,
      );
    } finally {
      l.close();
    }
  });
});

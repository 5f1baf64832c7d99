/**
 * Handshake check shared by every namespace: with a token configured, a client must present it in
 * `auth.token` (or, for clients of the original protocol, the `token` query parameter).
 */
import { timingSafeEqual } from 'node:crypto';
import type { Socket } from 'socket.io';

export function tokenMiddleware(token: string | undefined) {
  return (socket: Socket, next: (err?: Error) => void): void => {
    if (!token) return next();
    const auth = socket.handshake.auth as { token?: unknown } | undefined;
    const given = typeof auth?.token === 'string' ? auth.token : socket.handshake.query.token;
    if (typeof given === 'string' && safeEqual(given, token)) return next();
    const err = new Error('EAUTH: missing or wrong token') as Error & { data?: unknown };
    err.data = { code: 'EAUTH', message: 'missing or wrong token' };
    next(err);
  };
}

function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

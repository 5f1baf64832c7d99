/**
 * Who may talk to the master. Two checks, both as early as the transport allows:
 *   - the HTTP handshake (before a WebSocket upgrade, before any packet is read): a browser Origin
 *     that is not the master's own or allowed, or a token given there that is wrong, is refused;
 *   - each namespace's connect: with a token configured, a client must present it in `auth.token`
 *     (or, for clients of the original protocol, the `token` query parameter).
 * The read-only token opens the HTTP API's GET routes and the read-only /dashboard namespace, nothing
 * that acts.
 */
import { timingSafeEqual } from 'node:crypto';
import type http from 'node:http';
import type { Socket } from 'socket.io';
import { TaskmasterError } from '../protocol/errors';
import { isLoopback, MIN_TOKEN_LENGTH } from './config';

/** A namespace's check: the token, or for a read-only namespace also the read-only token. */
export function tokenMiddleware(token: string | undefined, readToken?: string) {
  return (socket: Socket, next: (err?: Error) => void): void => {
    if (!token) return next();
    const auth = socket.handshake.auth as { token?: unknown } | undefined;
    const given = typeof auth?.token === 'string' ? auth.token : socket.handshake.query.token;
    if (
      typeof given === 'string' &&
      (safeEqual(given, token) || (readToken !== undefined && safeEqual(given, readToken)))
    )
      return next();
    const err = new Error('EAUTH: missing or wrong token') as Error & { data?: unknown };
    err.data = { code: 'EAUTH', message: 'missing or wrong token' };
    next(err);
  };
}

/**
 * The Engine.IO handshake check: a refusal reason (`EORIGIN: …`, `EAUTH: …`), or undefined to go on.
 * A handshake without a token passes here; the namespace then asks for one.
 */
export function handshakeCheck(
  req: http.IncomingMessage,
  token: string | undefined,
  originAllowed: (origin: string | undefined) => boolean,
  readToken?: string,
): string | undefined {
  const origin = req.headers.origin;
  if (!originAllowed(origin)) return `EORIGIN: origin ${origin} may not connect (allowOrigins)`;
  if (!token) return undefined;
  const given = bearer(req.headers.authorization) ?? queryToken(req.url);
  // The read-only token passes here; only the /dashboard namespace then accepts it.
  if (
    given !== undefined &&
    !safeEqual(given, token) &&
    !(readToken !== undefined && safeEqual(given, readToken))
  )
    return 'EAUTH: wrong token';
  return undefined;
}

/** The token of an `Authorization: Bearer <token>` header. */
export function bearer(header: string | undefined): string | undefined {
  return header?.startsWith('Bearer ') ? header.slice(7) : undefined;
}

function queryToken(url: string | undefined): string | undefined {
  try {
    return new URL(url ?? '/', 'http://localhost').searchParams.get('token') ?? undefined;
  } catch {
    return undefined;
  }
}

/** Refuses a short token on a master other machines can reach: it could be guessed. */
export function checkTokenLength(host: string, ...tokens: (string | undefined)[]): void {
  if (isLoopback(host)) return;
  for (const t of tokens) {
    if (t !== undefined && t.length < MIN_TOKEN_LENGTH)
      throw new TaskmasterError(
        'EVALIDATION',
        `a token must be at least ${MIN_TOKEN_LENGTH} characters when the master listens on ${host} (beyond loopback)`,
      );
  }
}

export function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

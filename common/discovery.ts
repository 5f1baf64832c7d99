/**
 * Finding a master without configuring its URL (runners and feeders): from the masters' UDP
 * announcements, or from a tracker's `GET /hostsAvailable`. Both give up after a timeout with an
 * error that says what was tried.
 */
import dgram from 'node:dgram';
import { DISCOVERY_PORT, announcementSchema, hostsAvailableSchema } from '../protocol/discovery';
import { connectCause } from './connect-cause';
import { requestJson } from './http-request';

/** Listens for a master's announcement; resolves with its URL. */
export function discoverMaster(opts: { port?: number; timeoutMs?: number } = {}): Promise<string> {
  const port = opts.port ?? DISCOVERY_PORT;
  const timeoutMs = opts.timeoutMs ?? 10_000;
  return new Promise((resolve, reject) => {
    // reuseAddr: several runners and feeders on one machine all listen on the same port.
    const sock = dgram.createSocket({ type: 'udp4', reuseAddr: true });
    const done = (err: Error | null, url?: string) => {
      clearTimeout(timer);
      sock.close();
      if (err) reject(err);
      else resolve(url as string);
    };
    const timer = setTimeout(
      () => done(new Error(`no master announced itself on UDP port ${port} within ${timeoutMs} ms`)),
      timeoutMs,
    );
    sock.on('message', (msg) => {
      let parsed;
      try {
        parsed = announcementSchema.safeParse(JSON.parse(msg.toString('utf8')));
      } catch {
        return; // not ours
      }
      if (parsed.success) done(null, parsed.data.url);
    });
    sock.on('error', (err) =>
      done(new Error(`cannot listen for masters on UDP port ${port}: ${err.message}`)),
    );
    sock.bind(port);
  });
}

/** Asks a tracker (a master's URL) for the masters it knows; resolves with the first one's URL. */
export async function masterFromTracker(
  tracker: string,
  token?: string,
  timeoutMs = 10_000,
  ca?: string | string[],
): Promise<string> {
  let body: unknown;
  try {
    const res = await requestJson(new URL('/hostsAvailable', tracker), {
      headers: token ? { authorization: `Bearer ${token}` } : {},
      timeoutMs,
      ca,
    });
    body = res.body;
  } catch (err) {
    throw new Error(`cannot ask the tracker at ${tracker}: ${connectCause(err)}`);
  }
  const parsed = hostsAvailableSchema.safeParse(body);
  if (!parsed.success || parsed.data.masters.length === 0)
    throw new Error(`the tracker at ${tracker} knows no master`);
  return parsed.data.masters[0].url;
}

/**
 * Announces the master in UDP datagrams every `intervalMs` to a broadcast address (discovery, after
 * SuperCluster). Opt-in: a master only announces when asked to.
 */
import dgram from 'node:dgram';
import type { Logger } from '../common/logger';
import { DEFAULT_BROADCAST_ADDRESS, DISCOVERY_PORT, type Announcement } from '../protocol/discovery';

export interface AnnouncerOptions {
  url: string;
  id: string;
  data?: Record<string, unknown>;
  /** Default 127.255.255.255 (never leaves the machine). */
  address?: string;
  /** Default 44201. */
  port?: number;
  /** Default 3000 ms. */
  intervalMs?: number;
  logger: Logger;
}

export function startAnnouncer(opts: AnnouncerOptions): { stop(): void } {
  const sock = dgram.createSocket('udp4');
  const packet = Buffer.from(
    JSON.stringify({
      taskmaster: 1,
      role: 'master',
      url: opts.url,
      id: opts.id,
      data: opts.data ?? {},
    } satisfies Announcement),
  );
  const address = opts.address ?? DEFAULT_BROADCAST_ADDRESS;
  const port = opts.port ?? DISCOVERY_PORT;
  let timer: NodeJS.Timeout | null = null;
  const send = () =>
    sock.send(packet, port, address, (err) => {
      if (err) opts.logger.warn('announcement failed', { address, port, error: err.message });
    });
  sock.on('error', (err) => opts.logger.warn('announcer error', { error: err.message }));
  sock.bind(() => {
    sock.setBroadcast(true);
    send();
    timer = setInterval(send, opts.intervalMs ?? 3000);
    timer.unref();
  });
  sock.unref();
  opts.logger.info('announcing the master', { address, port });
  return {
    stop() {
      if (timer) clearInterval(timer);
      try {
        sock.close();
      } catch {
        // already closed
      }
    },
  };
}

/**
 * A recipient that stops reading must not make the master buffer without bound. What waits for one
 * connection is what Engine.IO queued (its `writeBuffer`, while the transport is busy) plus what the
 * WebSocket holds unsent (`ws.bufferedAmount`: Node's socket buffer and ws's own queue). It is
 * counted as each packet is queued — O(1) a packet — and a connection holding more than
 * `maxBufferedBytes` is closed at once (the WebSocket terminated: a polite close would wait for the
 * unread data to drain), with a warning naming its address and the limit. Every kind of message
 * goes through the same check: system messages, dashboard ticks, outcomes, assignments.
 */
import type { Server } from 'socket.io';
import { limitLog } from '../common/log-limit';
import type { Logger } from '../common/logger';

/** The parts of Engine.IO's socket this reads (its events and transport are not in its types). */
interface EngineConn {
  readonly remoteAddress: string;
  readonly transport: { name: string; socket?: { bufferedAmount?: number; terminate?: () => void } };
  on(ev: 'packetCreate', fn: (packet: { data?: unknown }) => void): void;
  on(ev: 'flush', fn: () => void): void;
  close(discard?: boolean): void;
}

export interface BufferCounts {
  /** Most bytes seen waiting for one connection since start (at most the limit plus one message). */
  peakBytes: number;
  /** Connections closed for not reading. */
  disconnected: number;
}

export class SlowReaders {
  readonly counts: BufferCounts = { peakBytes: 0, disconnected: 0 };

  constructor(
    private readonly maxBufferedBytes: number,
    private readonly logger: Logger,
  ) {}

  attach(io: Server): void {
    io.engine.on('connection', (conn: EngineConn) => this.watch(conn));
  }

  private watch(conn: EngineConn): void {
    /** Bytes queued in Engine.IO's writeBuffer since its last flush to the transport. */
    let queued = 0;
    let dropped = false;
    conn.on('flush', () => {
      queued = 0;
    });
    conn.on('packetCreate', (packet) => {
      if (dropped) return;
      queued += sizeOf(packet.data);
      const held = queued + (conn.transport.socket?.bufferedAmount ?? 0);
      if (held > this.counts.peakBytes) this.counts.peakBytes = held;
      if (held <= this.maxBufferedBytes) return;
      dropped = true;
      this.counts.disconnected++;
      limitLog(
        this.logger,
        'warn',
        'slow-reader',
        'slow reader disconnected: it stopped reading what the master sends',
        {
          address: conn.remoteAddress,
          transport: conn.transport.name,
          bufferedBytes: held,
          maxBufferedBytes: this.maxBufferedBytes,
          disconnected: this.counts.disconnected,
        },
      );
      const ws = conn.transport.socket;
      if (ws?.terminate) ws.terminate();
      else conn.close(true);
    });
  }
}

function sizeOf(data: unknown): number {
  if (typeof data === 'string') return Buffer.byteLength(data);
  if (data instanceof ArrayBuffer || ArrayBuffer.isView(data)) return data.byteLength;
  return 0;
}

/**
 * Messages on the /runner namespace, by direction and event, since start: what one task costs on
 * the wire between master and runners (`/api/status` shows them; `npm run bench` divides them by the
 * tasks drained). An acknowledgement travels as a message of its own and is counted as `ack`.
 */
import type { Socket } from 'socket.io';

export interface WireCountsView {
  in: Record<string, number>;
  out: Record<string, number>;
}

export class WireCounts {
  private readonly counts: WireCountsView = { in: {}, out: {} };

  /** Counts what `socket` receives and sends from now on. */
  attach(socket: Pick<Socket, 'onAny' | 'onAnyOutgoing' | 'on'>): void {
    socket.onAny((event: string, ...args: unknown[]) => {
      this.bump('in', event);
      // The master's answer to an event sent with an acknowledgement is one message back.
      if (typeof args[args.length - 1] === 'function') this.bump('out', 'ack');
    });
    socket.onAnyOutgoing((event: string) => this.bump('out', event));
  }

  view(): WireCountsView {
    return { in: { ...this.counts.in }, out: { ...this.counts.out } };
  }

  private bump(direction: 'in' | 'out', event: string): void {
    const c = this.counts[direction];
    c[event] = (c[event] ?? 0) + 1;
  }
}

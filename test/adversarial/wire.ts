/**
 * A Socket.IO client written against the wire protocol with `ws` alone (Engine.IO v4 over WebSocket),
 * light enough that one test process opens a thousand of them: it answers the master's pings,
 * joins one namespace, emits with acknowledgements, and can stop reading its socket altogether.
 *   open `0{…}` · ping `2` → pong `3` · CONNECT `40/nsp,{auth}` → `40/nsp,{sid}` or `44/nsp,{error}`
 *   EVENT `42/nsp,<id>[name, payload]` · ACK `43/nsp,<id>[reply]`
 */
import WebSocket from 'ws';
import { within, WAIT_MS } from '../helpers/wait';

export interface WireOptions {
  nsp: string;
  token?: string;
  localAddress?: string;
  /** Join the namespace (default true); false leaves the WebSocket open in no namespace. */
  join?: boolean;
}

export class WireClient {
  /** Events the master sent: name and payload. */
  readonly events: [string, unknown][] = [];
  private nextId = 1;
  private readonly acks = new Map<number, (v: unknown) => void>();
  private readonly checks = new Set<() => void>();
  private readonly prefix: string;
  private closedPromise: Promise<void>;

  private constructor(
    readonly ws: WebSocket,
    readonly nsp: string,
  ) {
    this.prefix = nsp === '/' ? '' : `${nsp},`;
    this.closedPromise = new Promise((resolve) => ws.once('close', () => resolve()));
    ws.on('message', (data: Buffer) => this.onMessage(data.toString()));
  }

  /** Connects; resolves once the namespace accepted it (or once the transport opened, with `join: false`). */
  static open(url: string, opts: WireOptions): Promise<WireClient> {
    const ws = new WebSocket(`${url.replace(/^http/, 'ws')}/socket.io/?EIO=4&transport=websocket`, {
      localAddress: opts.localAddress,
      // Bounded: a connection the master never accepted fails instead of waiting forever.
      handshakeTimeout: 20_000,
    });
    const c = new WireClient(ws, opts.nsp);
    ws.on('error', () => undefined);
    return new Promise((resolve, reject) => {
      ws.once('close', () => reject(new Error(`closed before joining ${opts.nsp}`)));
      ws.on('message', (data: Buffer) => {
        const m = data.toString();
        if (m.startsWith('0{')) {
          if (opts.join === false) return resolve(c);
          ws.send(`40${c.prefix}${JSON.stringify(opts.token ? { token: opts.token } : {})}`);
        } else if (m.startsWith(`40${c.prefix}`)) resolve(c);
        else if (m.startsWith(`44${c.prefix}`)) reject(new Error(`refused: ${m}`));
      });
    });
  }

  emitWithAck(event: string, payload: unknown, ms = 10_000): Promise<unknown> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.acks.delete(id);
        reject(new Error(`no acknowledgement of ${event} within ${ms} ms`));
      }, ms);
      this.acks.set(id, (v) => {
        clearTimeout(timer);
        resolve(v);
      });
      this.ws.send(`42${this.prefix}${id}${JSON.stringify([event, payload])}`);
    });
  }

  /** Resolves once `pred` holds, checked at once and after each event the master sends; bounded. */
  until(pred: () => boolean, what: string | (() => string), ms = WAIT_MS): Promise<void> {
    return within(
      ms,
      new Promise<void>((resolve) => {
        const check = () => {
          if (!pred()) return;
          this.checks.delete(check);
          resolve();
        };
        this.checks.add(check);
        check();
      }),
      what,
    );
  }

  emit(event: string, payload: unknown): void {
    this.ws.send(`42${this.prefix}${JSON.stringify([event, payload])}`);
  }

  /** Stops reading: the master's writes pile up in its buffers (and the kernel's). */
  stopReading(): void {
    (this.ws as unknown as { _socket: { pause(): void } })._socket.pause();
  }

  get closed(): Promise<void> {
    return this.closedPromise;
  }

  close(): void {
    this.ws.terminate();
  }

  private onMessage(m: string): void {
    if (m === '2') return this.ws.send('3');
    const ack = new RegExp(`^43${escape(this.prefix)}(\\d+)`).exec(m);
    if (ack) {
      const [reply] = JSON.parse(m.slice(ack[0].length)) as unknown[];
      this.acks.get(Number(ack[1]))?.(reply);
      this.acks.delete(Number(ack[1]));
      return;
    }
    if (m.startsWith(`42${this.prefix}`)) {
      const rest = m.slice(2 + this.prefix.length);
      const id = /^\d+/.exec(rest)?.[0];
      const [name, payload] = JSON.parse(rest.slice(id?.length ?? 0)) as [string, unknown];
      // The master asked for an acknowledgement (a system message): given at once, empty.
      if (id !== undefined) this.ws.send(`43${this.prefix}${id}[]`);
      this.events.push([name, payload]);
      for (const c of [...this.checks]) c();
    }
  }
}

function escape(s: string): string {
  return s.replace(/[/\\^$.*+?()[\]{}|]/g, '\\$&');
}

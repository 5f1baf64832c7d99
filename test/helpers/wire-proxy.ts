/**
 * A TCP proxy on loopback between one client and the database, reading the MongoDB wire protocol
 * the client sends: it records the name of every command (the first key of an OP_MSG's body), with
 * when it passed. A test points one master at the proxy to see exactly what that master asked of the
 * database, and when: a paused master that lost its lease must send no write once it wakes.
 */
import net from 'node:net';

/** A command the client sent, with the time (Date.now()) its last byte passed the proxy. */
export interface SeenCommand {
  name: string;
  collection: unknown;
  at: number;
}

/** Commands that change data. */
export const WRITE_COMMANDS = new Set([
  'insert',
  'update',
  'delete',
  'findAndModify',
  'drop',
  'createIndexes',
]);

const OP_MSG = 2013;

export class WireProxy {
  readonly commands: SeenCommand[] = [];
  private readonly server: net.Server;
  private readonly sockets = new Set<net.Socket>();

  private constructor(private readonly target: { host: string; port: number }) {
    this.server = net.createServer((client) => this.pipe(client));
  }

  /** Starts a proxy to the server of `mongoUrl`; `url(dbName)` is the URL through it. */
  static async start(mongoUrl: string): Promise<WireProxy> {
    const u = new URL(mongoUrl);
    const proxy = new WireProxy({ host: u.hostname, port: Number(u.port || 27017) });
    await new Promise<void>((resolve) => proxy.server.listen(0, '127.0.0.1', resolve));
    return proxy;
  }

  url(dbName: string): string {
    const { port } = this.server.address() as net.AddressInfo;
    return `mongodb://127.0.0.1:${port}/${dbName}`;
  }

  /** The writes sent at or after `since` (Date.now()). */
  writesSince(since: number): SeenCommand[] {
    return this.commands.filter((c) => c.at >= since && WRITE_COMMANDS.has(c.name));
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private pipe(client: net.Socket): void {
    const upstream = net.connect(this.target.port, this.target.host);
    this.sockets.add(client).add(upstream);
    let buffered: Buffer = Buffer.alloc(0);
    client.on('data', (chunk: Buffer) => {
      buffered = buffered.length ? Buffer.concat([buffered, chunk]) : chunk;
      while (buffered.length >= 16) {
        const length = buffered.readInt32LE(0);
        if (buffered.length < length) break;
        this.read(buffered.subarray(0, length));
        buffered = buffered.subarray(length);
      }
      upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => client.write(chunk));
    const end = () => {
      client.destroy();
      upstream.destroy();
      this.sockets.delete(client);
      this.sockets.delete(upstream);
    };
    client.on('close', end).on('error', end);
    upstream.on('close', end).on('error', end);
  }

  /** One message: header (16 bytes), flag bits (4), then sections; kind 0 is the command's body. */
  private read(msg: Buffer): void {
    if (msg.readInt32LE(12) !== OP_MSG || msg.length < 26 || msg[20] !== 0) return;
    const body = 21; // the BSON document: int32 length, then elements (type byte, name, value)
    const nameStart = body + 5;
    const nameEnd = msg.indexOf(0, nameStart);
    if (nameEnd < 0) return;
    const name = msg.toString('utf8', nameStart, nameEnd);
    let collection: unknown;
    if (msg[body + 4] === 0x02) {
      // A string value (the collection): int32 length including its terminating zero, then the bytes.
      const len = msg.readInt32LE(nameEnd + 1);
      collection = msg.toString('utf8', nameEnd + 5, nameEnd + 4 + len);
    }
    this.commands.push({ name, collection, at: Date.now() });
  }
}

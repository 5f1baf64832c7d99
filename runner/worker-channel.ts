/**
 * The channel between the runner and one worker process: JSON messages, one per line, over a socket
 * pair the runner creates as the worker's file descriptor {@link WORKER_CHANNEL_FD}.
 *
 * Node's own IPC channel reads a message until its newline before parsing it, whatever its size, so
 * a task writing to it directly could grow the runner without bound (and stop it at V8's longest
 * string). This one never holds more than `maxBytes` of a message: a longer one is reported
 * (`oversize`) and reading stops, and the runner kills the worker. JSON text has no raw newline, so
 * a newline always ends a message.
 *
 * Messages sent in one tick travel as one line holding a JSON array (message-batch.ts); the reader
 * passes each on as a message of its own.
 *
 * The worker's end uses the JSON functions captured when it is loaded, before any task runs: a task
 * replacing `JSON.stringify` must not change what its neighbours' reports say.
 */
import { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
import { ENVELOPE_BYTES } from '../protocol/limits';
import { MessageBatch, unpack } from './message-batch';

/** The worker's file descriptor for its channel to the runner (named in its environment too). */
export const WORKER_CHANNEL_FD = 3;
/** Names the channel's descriptor in a worker's environment; its absence means "not started by a runner". */
export const WORKER_CHANNEL_VAR = 'TASKMASTER_WORKER_CHANNEL';

/**
 * The longest message a worker may send, for a runner whose results may be `maxResultBytes` long:
 * that (at least 1 MiB, so a capped error always fits) and 16 KiB of envelope.
 */
export function workerMessageLimit(maxResultBytes: number): number {
  const room = Number.isFinite(maxResultBytes) ? Math.max(maxResultBytes, 1024 * 1024) : 1024 * 1024;
  return room + ENVELOPE_BYTES;
}

const JSONStringify = JSON.stringify;
const JSONParse = JSON.parse;
const NEWLINE = 0x0a;

export interface ChannelEvents {
  /** A message, parsed as JSON (`undefined` if the line was not JSON); each of a batch on its own. */
  message: [unknown];
  /** A message grew past `maxBytes` before its newline: nothing more is read. */
  oversize: [limit: number];
  close: [];
}

export class WorkerChannel extends EventEmitter<ChannelEvents> {
  private parts: Buffer[] = [];
  private size = 0;
  private stopped = false;
  private closed = false;
  /** Captured with the socket, before any task runs: a task may replace `Socket.prototype.write`. */
  private readonly write: Duplex['write'];
  private readonly batch = new MessageBatch((text) => this.writeLine(text));

  constructor(
    private readonly socket: Duplex,
    /** Longest message accepted, read when a message begins (it may change with the master's limits). */
    private readonly maxBytes: () => number = () => Infinity,
  ) {
    super();
    this.write = socket.write.bind(socket) as Duplex['write'];
    socket.on('data', (chunk: Buffer) => this.read(chunk));
    socket.on('close', () => {
      this.closed = true;
      this.batch.clear();
      this.emit('close');
    });
    // A write to a worker that just died fails; its exit tells the real story.
    socket.on('error', () => undefined);
  }

  get open(): boolean {
    return !this.closed && this.socket.writable;
  }

  /**
   * Sends one message at the end of the tick, with the others sent in it. With `done`, it goes now
   * (after those queued before it), and `done` is called once it has been handed to the system.
   */
  send(msg: unknown, done?: () => void): void {
    if (!this.open) return done?.();
    const text = JSONStringify(msg);
    if (!done) return this.batch.add(text);
    this.batch.flush();
    this.write(`${text}\n`, () => done());
  }

  /** Writes the messages queued in this tick now. */
  flush(): void {
    if (this.open) this.batch.flush();
  }

  private writeLine(text: string): void {
    if (this.open) this.write(`${text}\n`);
  }

  close(): void {
    this.socket.destroy();
  }

  private read(chunk: Buffer): void {
    let from = 0;
    while (!this.stopped) {
      const nl = chunk.indexOf(NEWLINE, from);
      const end = nl === -1 ? chunk.length : nl;
      if (!this.append(chunk.subarray(from, end))) return;
      if (nl === -1) return;
      const line = this.parts.length === 1 ? this.parts[0] : Buffer.concat(this.parts, this.size);
      this.parts = [];
      this.size = 0;
      from = nl + 1;
      let msg: unknown;
      try {
        msg = JSONParse(line.toString('utf8'));
      } catch {
        msg = undefined;
      }
      for (const one of unpack(msg)) this.emit('message', one);
    }
  }

  /** Keeps `piece` of the current message; false (and `oversize`) if that makes it too long. */
  private append(piece: Buffer): boolean {
    if (piece.length === 0) return true;
    const max = this.maxBytes();
    if (this.size + piece.length > max) {
      this.stopped = true;
      this.parts = [];
      this.size = 0;
      this.socket.destroy();
      this.emit('oversize', max);
      return false;
    }
    // A copy: a short message must not pin the whole chunk it came in.
    this.parts.push(Buffer.from(piece));
    this.size += piece.length;
    return true;
  }
}

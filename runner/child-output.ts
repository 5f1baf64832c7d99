/**
 * What a child process prints on stdout and stderr, cut into lines for the runner's log with bounded
 * memory, however much a task writes and whether or not it ever writes a newline.
 *
 * Two limits, both on bytes as the task wrote them:
 *   - a line longer than {@link MAX_OUTPUT_LINE_BYTES} is logged when it reaches that length, with a
 *     marker saying it was cut; the rest of it, up to its newline, is counted and dropped;
 *   - at most {@link MAX_OUTPUT_BYTES_PER_ATTEMPT} bytes are logged per attempt. Output is not tagged
 *     with the attempt that wrote it (several may share the process), so the budget belongs to the
 *     process and is renewed each time it is given an attempt. Past it, one line says the rest is not
 *     logged; when the budget is renewed (or the process exits), one line says how much was left out.
 * The streams are always read to their end, so a task that floods them is never blocked on a full
 * pipe; what is dropped is dropped without being kept. A cut may split a UTF-8 character.
 */
import type { Readable } from 'node:stream';
import type { Logger } from '../common/logger';

/** Longest line of a task's output the runner logs as it is; a longer one is cut with a marker. */
export const MAX_OUTPUT_LINE_BYTES = 16 * 1024;
/** Bytes of a worker process's output logged per attempt it is given; the rest is counted, not logged. */
export const MAX_OUTPUT_BYTES_PER_ATTEMPT = 1024 * 1024;

const NEWLINE = 0x0a;

export interface OutputLimits {
  lineBytes: number;
  attemptBytes: number;
}

export class ChildOutput {
  private room: number;
  /** Bytes not logged since the budget ran out. */
  private dropped = 0;
  private readonly limits: OutputLimits;

  constructor(
    private readonly log: Logger,
    limits: Partial<OutputLimits> = {},
  ) {
    this.limits = {
      lineBytes: limits.lineBytes ?? MAX_OUTPUT_LINE_BYTES,
      attemptBytes: limits.attemptBytes ?? MAX_OUTPUT_BYTES_PER_ATTEMPT,
    };
    this.room = this.limits.attemptBytes;
  }

  /** Logs `stream` line by line at `level` (stdout: info, stderr: warn). */
  attach(stream: Readable, name: 'stdout' | 'stderr'): void {
    const level = name === 'stdout' ? 'info' : 'warn';
    const max = this.limits.lineBytes;
    let parts: Buffer[] = [];
    let kept = 0;
    /** The current line reached `max` and was logged: the rest of it is dropped up to its newline. */
    let cut = false;
    const emit = (marker: string) => {
      let text = Buffer.concat(parts, kept).toString('utf8');
      if (!marker && text.endsWith('\r')) text = text.slice(0, -1);
      parts = [];
      kept = 0;
      this.line(level, text + marker, name);
    };
    const append = (piece: Buffer) => {
      if (cut || piece.length === 0) return;
      const take = Math.min(piece.length, max - kept);
      // A copy, so a kept slice does not pin the whole 64 KiB chunk it came from.
      parts.push(Buffer.from(piece.subarray(0, take)));
      kept += take;
      if (kept >= max && take < piece.length) {
        cut = true;
        emit(` … [line cut at ${max} bytes; the rest of it is not logged]`);
      }
    };
    stream.on('data', (chunk: Buffer) => {
      let from = 0;
      for (let nl = chunk.indexOf(NEWLINE, from); nl !== -1; nl = chunk.indexOf(NEWLINE, from)) {
        append(chunk.subarray(from, nl));
        if (!cut) emit('');
        cut = false;
        from = nl + 1;
      }
      append(chunk.subarray(from));
    });
    stream.on('end', () => {
      if (kept > 0) emit('');
      this.renew();
    });
  }

  /** The process was given an attempt: a fresh budget (and one line on what the last one left out). */
  renew(): void {
    if (this.dropped > 0) {
      this.log.warn('task output not logged: over the limit per attempt', {
        droppedBytes: this.dropped,
        limitBytes: this.limits.attemptBytes,
      });
    }
    this.dropped = 0;
    this.room = this.limits.attemptBytes;
  }

  private line(level: 'info' | 'warn', text: string, stream: string): void {
    const bytes = Buffer.byteLength(text);
    if (this.room <= 0 || bytes > this.room) {
      if (this.dropped === 0)
        this.log.warn(
          `task output reached ${this.limits.attemptBytes} bytes for this attempt; the rest is not logged`,
          { stream },
        );
      this.dropped += bytes;
      this.room = 0;
      return;
    }
    this.room -= bytes;
    this.log.log(level, text, { stream });
  }
}

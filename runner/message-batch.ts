/**
 * Messages between a runner and one worker made in the same tick travel as one: the JSON texts queued
 * in a tick are written together, as a JSON array, when the tick ends (`setImmediate`), so ten
 * assignments handed to a worker at once, or ten results settled at once, cost one write, one wake-up
 * and one parse on the other side instead of ten. A message is never an array, so the reader tells a
 * batch from a single message by its first character (see {@link unpack}).
 *
 * Bounds: a batch is flushed before it would pass {@link BATCH_CHARS} characters of JSON (at most
 * three bytes each as UTF-8, so a batch stays far below the 1 MiB a worker's message may be); a
 * message longer than that travels alone, as it did before batching, and is measured against the
 * channel's limit on its own.
 */

/** Characters of JSON after which a batch is written without waiting for the end of the tick. */
export const BATCH_CHARS = 64 * 1024;

export class MessageBatch {
  private parts: string[] = [];
  private chars = 0;
  private scheduled = false;
  private readonly onTick = () => {
    this.scheduled = false;
    this.flush();
  };

  constructor(private readonly write: (text: string) => void) {}

  /** Queues one message's JSON text; it is written at the end of the tick, with the others. */
  add(text: string): void {
    if (text.length > BATCH_CHARS) {
      this.flush();
      this.write(text);
      return;
    }
    if (this.chars + text.length > BATCH_CHARS) this.flush();
    this.parts.push(text);
    this.chars += text.length + 1;
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.onTick);
    }
  }

  /** Writes what is queued now (before a message that must go at once, or before the worker ends). */
  flush(): void {
    if (this.parts.length === 0) return;
    const text = this.parts.length === 1 ? this.parts[0] : `[${this.parts.join(',')}]`;
    this.parts = [];
    this.chars = 0;
    this.write(text);
  }

  /** Drops what is queued (the other end is gone). */
  clear(): void {
    this.parts = [];
    this.chars = 0;
  }
}

/** The messages one received value holds: a batch's elements, or the value itself. */
export function unpack(value: unknown): unknown[] {
  return Array.isArray(value) ? value : [value];
}

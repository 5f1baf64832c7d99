/**
 * Reads a batch for `taskmaster feed`: a JSON array of tasks, or NDJSON (one task per line). Bad JSON
 * is reported with its line (`batch.ndjson:3: not valid JSON: …`), and so are bytes that are not
 * UTF-8 (`batch.ndjson:7: not valid UTF-8`): refused, never replaced. The tasks themselves are not
 * checked here: the master validates every batch, so every client gets the same messages.
 *
 * A file is read as a stream, a line at a time: NDJSON never exists whole as text, only as the
 * tasks parsed from it, so its size is not bounded by the longest string V8 holds (about 512 MB)
 * and the memory it takes is that of its tasks. A JSON array is parsed whole, so it is bounded by
 * that string: larger batches go as NDJSON.
 */
import fs from 'node:fs';
import type { Readable } from 'node:stream';

export interface Batch {
  tasks: unknown[];
  /** For NDJSON, the 1-based line of each task, to point the master's `tasks[i]` issues at a line. */
  lines?: number[];
}

export function parseBatch(text: string, source = 'input'): Batch {
  const body = text.replace(/^\uFEFF/, '');
  const trimmed = body.trim();
  if (trimmed === '')
    throw new Error(`${source}: empty; expected a JSON array of tasks, or one task per line (NDJSON)`);
  if (trimmed.startsWith('[')) {
    try {
      return { tasks: JSON.parse(body) as unknown[] };
    } catch (err) {
      const { line, column, reason } = locate(body, (err as Error).message);
      throw new Error(`${source}:${line}:${column}: not valid JSON: ${reason}`);
    }
  }
  const tasks: unknown[] = [];
  const lines: number[] = [];
  body.split(/\r?\n/).forEach((text, i) => {
    if (text.trim() === '') return;
    try {
      tasks.push(JSON.parse(text));
      lines.push(i + 1);
    } catch (err) {
      const hint =
        i === 0 && trimmed.startsWith('{') && !trimmed.split('\n')[0].trim().endsWith('}')
          ? ' (NDJSON needs one whole task per line; for a pretty-printed file use a JSON array)'
          : '';
      throw new Error(
        `${source}:${i + 1}: not valid JSON: ${locate(text, (err as Error).message).reason}${hint}`,
      );
    }
  });
  return { tasks, lines };
}

/** A read stream of `file`, opened before the first line is read: a missing file is named as such. */
export async function openFile(file: string): Promise<fs.ReadStream> {
  const input = fs.createReadStream(file);
  try {
    await new Promise<void>((resolve, reject) => {
      input.once('open', () => resolve());
      input.once('error', reject);
    });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new Error(
      `${file}: cannot read it (${code === 'ENOENT' ? 'no such file' : (code ?? String(err))})`,
    );
  }
  return input;
}

export async function readBatch(file: string): Promise<Batch> {
  if (file === '-') return readStream(process.stdin, 'stdin');
  const input = await openFile(file);
  try {
    return await readStream(input, file);
  } finally {
    input.destroy();
  }
}

/** A batch from a stream, a line at a time (see the file's comment). */
export async function readStream(input: Readable, source: string): Promise<Batch> {
  let mode: 'array' | 'ndjson' | undefined;
  const arrayLines: string[] = [];
  const tasks: unknown[] = [];
  const lines: number[] = [];
  let firstLine = '';
  await eachLine(input, source, (text, lineNo) => {
    if (mode === undefined) {
      const start = text.trimStart();
      if (start === '') return;
      mode = start.startsWith('[') ? 'array' : 'ndjson';
      firstLine = text.trim();
    }
    if (mode === 'array') return void arrayLines.push(text);
    if (text.trim() === '') return;
    tasks.push(parseLine(text, source, lineNo, tasks.length === 0 ? firstLine : ''));
    lines.push(lineNo);
  });
  if (mode === 'array') {
    // Only the lines, without a copy of the whole file besides them.
    const text = arrayLines.join('\n');
    arrayLines.length = 0;
    return parseBatch(text, source);
  }
  if (mode === undefined)
    throw new Error(`${source}: empty; expected a JSON array of tasks, or one task per line (NDJSON)`);
  return { tasks, lines };
}

/**
 * One NDJSON line's task, or the error naming the line. `firstLine`, for the first task: when it
 * opens a brace it does not close, the file is a pretty-printed object, and the error says so.
 */
export function parseLine(text: string, source: string, lineNo: number, firstLine = ''): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    const hint =
      firstLine.startsWith('{') && !firstLine.endsWith('}')
        ? ' (NDJSON needs one whole task per line; for a pretty-printed file use a JSON array)'
        : '';
    throw new Error(
      `${source}:${lineNo}: not valid JSON: ${locate(text, (err as Error).message).reason}${hint}`,
    );
  }
}

/**
 * Calls `take` with each line of `input` as text (without its newline, a `\r` before it, or a
 * leading byte-order mark), its 1-based number, and the byte offset and length of its bytes in the
 * input. Bytes that are not UTF-8 are refused, naming the line.
 */
export async function eachLine(
  input: Readable,
  source: string,
  take: (text: string, lineNo: number, offset: number, bytes: number) => void,
): Promise<void> {
  const utf8 = new TextDecoder('utf-8', { fatal: true });
  let lineNo = 0;
  let offset = 0;
  const line = (bytes: Buffer) => {
    lineNo++;
    let text: string;
    try {
      text = utf8.decode(bytes);
    } catch {
      throw new Error(`${source}:${lineNo}: not valid UTF-8 (refused rather than replaced)`);
    }
    if (text.endsWith('\r')) text = text.slice(0, -1);
    if (lineNo === 1) text = text.replace(/^\uFEFF/, '');
    take(text, lineNo, offset, bytes.length);
    offset += bytes.length + 1;
  };
  // The parts of the line being read, until its newline comes.
  let parts: Buffer[] = [];
  for await (const chunk of input as AsyncIterable<Buffer | string>) {
    const buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    let start = 0;
    for (let nl = buf.indexOf(0x0a); nl >= 0; nl = buf.indexOf(0x0a, start)) {
      parts.push(buf.subarray(start, nl));
      line(parts.length === 1 ? parts[0] : Buffer.concat(parts));
      parts = [];
      start = nl + 1;
    }
    if (start < buf.length) parts.push(buf.subarray(start));
  }
  if (parts.length > 0) line(Buffer.concat(parts));
}

/**
 * Line and column of a JSON.parse error. Node 20 says "at position N", newer versions "(line L column
 * C)"; the reason is returned without either.
 */
function locate(text: string, message: string): { line: number; column: number; reason: string } {
  const lc = /\(line (\d+) column (\d+)\)/.exec(message);
  if (lc) return { line: Number(lc[1]), column: Number(lc[2]), reason: message.replace(lc[0], '').trim() };
  const pos = / at position (\d+)/.exec(message);
  const at = pos ? Number(pos[1]) : text.length;
  const before = text.slice(0, at);
  const line = before.split('\n').length;
  const column = at - (before.lastIndexOf('\n') + 1) + 1;
  const reason = (pos ? message.replace(pos[0], '') : message).replace(/ in JSON$/, '').trim();
  return { line, column, reason };
}

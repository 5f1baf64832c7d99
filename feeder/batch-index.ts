/**
 * What `taskmaster feed` keeps of an NDJSON file too large for one message: for each task its id,
 * its dependencies, its line and where its bytes are, never its params. The tasks are read again
 * from the file as they are sent (`TaskReader`), a message's worth at a time, so the feed's memory
 * does not grow with the size of the tasks (only with their count, by their ids).
 *
 * The first pass checks every line as `readBatch` does (UTF-8, JSON, each naming its line) and
 * refuses an id the file gives twice (one add would be refused whole; split into several adds the
 * second would be refused, or skipped with `--on-existing skip`, after the first was stored).
 */
import fs from 'node:fs';
import { eachLine, openFile, parseLine } from './batch-file';

export interface BatchIndex {
  /** Per task, in file order. */
  ids: (string | undefined)[];
  dependencies: (string[] | undefined)[];
  lines: number[];
  offsets: number[];
  lengths: number[];
  /** The bytes of all the tasks' lines. */
  bytes: number;
}

/** The index of an NDJSON file, or null when the file is a JSON array (read whole instead). */
export async function indexFile(file: string): Promise<BatchIndex | null> {
  const input = await openFile(file);
  const out: BatchIndex = { ids: [], dependencies: [], lines: [], offsets: [], lengths: [], bytes: 0 };
  const lineOf = new Map<string, number>();
  let array = false;
  let firstLine: string | undefined;
  // Stops the read at the first line of a JSON array: that is read whole, by readBatch.
  const isArray = new Error('array');
  try {
    await eachLine(input, file, (text, lineNo, offset, bytes) => {
      const trimmed = text.trim();
      if (trimmed === '') return;
      if (firstLine === undefined) {
        if (trimmed.startsWith('[')) throw isArray;
        firstLine = trimmed;
      }
      const t = parseLine(text, file, lineNo, out.ids.length === 0 ? firstLine : '') as {
        id?: unknown;
        dependencies?: unknown;
      } | null;
      const id = typeof t?.id === 'string' ? t.id : undefined;
      if (id !== undefined) {
        const before = lineOf.get(id);
        if (before !== undefined)
          throw new Error(
            `${file}:${lineNo}: id "${id}" is also the id of line ${before}: ids must be unique`,
          );
        lineOf.set(id, lineNo);
      }
      const deps = Array.isArray(t?.dependencies)
        ? t.dependencies.filter((d): d is string => typeof d === 'string')
        : undefined;
      out.ids.push(id);
      out.dependencies.push(deps && deps.length > 0 ? deps : undefined);
      out.lines.push(lineNo);
      out.offsets.push(offset);
      out.lengths.push(bytes);
      out.bytes += bytes;
    });
  } catch (err) {
    if (err !== isArray) throw err;
    array = true;
  } finally {
    input.destroy();
  }
  if (array) return null;
  if (out.ids.length === 0)
    throw new Error(`${file}: empty; expected a JSON array of tasks, or one task per line (NDJSON)`);
  return out;
}

/** Reads tasks back from the file by position, through a 1 MB window (in file order, one read a MB). */
export class TaskReader {
  private readonly fd: number;
  private readonly window = Buffer.alloc(1024 * 1024);
  private start = 0;
  private end = 0;

  constructor(private readonly file: string) {
    this.fd = fs.openSync(file, 'r');
  }

  /** The task whose line is at `offset`, `length` bytes long (`line`, to name it). */
  read(offset: number, length: number, line: number): unknown {
    let text: string;
    if (length > this.window.length) {
      const b = Buffer.alloc(length);
      fs.readSync(this.fd, b, 0, length, offset);
      text = b.toString('utf8');
    } else {
      if (offset < this.start || offset + length > this.end) {
        this.start = offset;
        this.end = offset + fs.readSync(this.fd, this.window, 0, this.window.length, offset);
      }
      text = this.window.toString('utf8', offset - this.start, offset - this.start + length);
    }
    // A byte-order mark opens the first line only; the first pass parsed the line without it.
    return parseLine(text.replace(/^\uFEFF/, ''), `${this.file} (changed since it was read?)`, line);
  }

  close(): void {
    fs.closeSync(this.fd);
  }
}

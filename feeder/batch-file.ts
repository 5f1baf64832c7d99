/**
 * Reads a batch for `taskmaster feed`: a JSON array of tasks, or NDJSON (one task per line). Bad JSON
 * is reported with its line (`batch.ndjson:3: not valid JSON: …`). The tasks themselves are not
 * checked here: the master validates every batch, so every client gets the same messages.
 */
import fs from 'node:fs';

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

export async function readBatch(file: string): Promise<Batch> {
  if (file === '-') {
    const chunks: Buffer[] = [];
    for await (const c of process.stdin) chunks.push(c as Buffer);
    return parseBatch(Buffer.concat(chunks).toString('utf8'), 'stdin');
  }
  let text: string;
  try {
    text = await fs.promises.readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new Error(
      `${file}: cannot read it (${code === 'ENOENT' ? 'no such file' : (code ?? String(err))})`,
    );
  }
  return parseBatch(text, file);
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

/**
 * Reads a batch for `taskmaster feed`: a JSON array of tasks, or NDJSON (one task per line). A line
 * that is not JSON is named in the error.
 */
import fs from 'node:fs';

export function parseBatch(text: string, source = 'input'): unknown[] {
  const trimmed = text.trim();
  if (trimmed === '')
    throw new Error(`${source}: empty, expected a JSON array of tasks or one task per line`);
  if (trimmed.startsWith('[')) {
    try {
      const v = JSON.parse(trimmed) as unknown;
      if (Array.isArray(v)) return v;
    } catch (err) {
      throw new Error(`${source}: not valid JSON: ${(err as Error).message}`);
    }
  }
  const out: unknown[] = [];
  text.split(/\r?\n/).forEach((line, i) => {
    if (line.trim() === '') return;
    try {
      out.push(JSON.parse(line));
    } catch (err) {
      throw new Error(`${source}:${i + 1}: not valid JSON: ${(err as Error).message}`);
    }
  });
  return out;
}

export async function readBatch(file: string): Promise<unknown[]> {
  if (file === '-') {
    const chunks: Buffer[] = [];
    for await (const c of process.stdin) chunks.push(c as Buffer);
    return parseBatch(Buffer.concat(chunks).toString('utf8'), 'stdin');
  }
  return parseBatch(fs.readFileSync(file, 'utf8'), file);
}

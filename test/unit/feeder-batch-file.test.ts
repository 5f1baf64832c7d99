import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { parseBatch, readBatch, readStream } from '../../feeder/batch-file';

describe('batch files for taskmaster feed', () => {
  test('a JSON array is read as it is, even pretty-printed over many lines', () => {
    const text = '[\n  { "module": "a" },\n  { "module": "b", "params": [1] }\n]\n';
    expect(parseBatch(text, 'b.json')).toEqual({ tasks: [{ module: 'a' }, { module: 'b', params: [1] }] });
  });

  test("NDJSON gives one task per line, skipping blank lines and remembering each task's line", () => {
    const text = '{"module":"a"}\r\n\n{"module":"b"}\n   \n{"module":"c"}\n';
    expect(parseBatch(text, 'b.ndjson')).toEqual({
      tasks: [{ module: 'a' }, { module: 'b' }, { module: 'c' }],
      lines: [1, 3, 5],
    });
  });

  test('a bad NDJSON line is named by file and line', () => {
    const text = '{"module":"a"}\n{"module":"b"}\n{"module": c}\n';
    expect(() => parseBatch(text, 'b.ndjson')).toThrow(/^b\.ndjson:3: not valid JSON: /);
  });

  test('bad JSON inside an array is named by line and column', () => {
    const text = '[\n  {"module":"a"},\n  {"module":"b",}\n]';
    expect(() => parseBatch(text, 'b.json')).toThrow(/^b\.json:3:17: not valid JSON: /);
  });

  test('a truncated array points at its last line', () => {
    expect(() => parseBatch('[\n{"module":"a"},\n', 'b.json')).toThrow(/^b\.json:3:1: not valid JSON/);
  });

  test('a pretty-printed single object gets a hint instead of a bare syntax error', () => {
    expect(() => parseBatch('{\n  "module": "a"\n}\n', 'one.json')).toThrow(
      /one\.json:1: .*use a JSON array/,
    );
  });

  test('an empty file is an error that says what was expected', () => {
    expect(() => parseBatch(' \n', 'empty.json')).toThrow(
      'empty.json: empty; expected a JSON array of tasks, or one task per line (NDJSON)',
    );
  });

  test('a byte-order mark does not break parsing', () => {
    expect(parseBatch('\uFEFF[{"module":"a"}]').tasks).toEqual([{ module: 'a' }]);
  });

  test('a missing file is reported by name', async () => {
    const missing = path.join(os.tmpdir(), `taskmaster-no-such-${process.pid}.json`);
    await expect(readBatch(missing)).rejects.toThrow(`${missing}: cannot read it (no such file)`);
  });

  test('the example batch parses, with unique ids and dependencies that name earlier tasks', async () => {
    const { tasks } = await readBatch(path.join(__dirname, '..', '..', 'tasks', 'example-batch.json'));
    const list = tasks as { id: string; dependencies?: string[] }[];
    expect(list.length).toBeGreaterThanOrEqual(10);
    const ids = list.map((t) => t.id);
    expect(new Set(ids).size).toBe(ids.length);
    list.forEach((t, i) => {
      for (const d of t.dependencies ?? []) expect(ids.slice(0, i)).toContain(d);
    });
    expect(fs.existsSync(path.join(__dirname, '..', '..', 'tasks', 'README.md'))).toBe(true);
  });
});

describe('reading a batch as a stream', () => {
  const chunks = (text: Buffer, size: number) => {
    const out: Buffer[] = [];
    for (let i = 0; i < text.length; i += size) out.push(text.subarray(i, i + size));
    return Readable.from(out);
  };

  test('NDJSON in chunks that cut lines and characters: the tasks and their lines, as parseBatch gives them', async () => {
    const text = '\uFEFF{"module":"a","params":["é→😀"]}\r\n\n{"module":"b"}\n  \n{"module":"c"}';
    for (const size of [1, 3, 7, 1000])
      expect(await readStream(chunks(Buffer.from(text), size), 'b.ndjson')).toEqual(
        parseBatch(text, 'b.ndjson'),
      );
  });

  test('a JSON array in chunks is parsed whole, with the same line and column on an error', async () => {
    const good = '[\n  {"module":"a"},\n  {"module":"b"}\n]\n';
    expect(await readStream(chunks(Buffer.from(good), 5), 'b.json')).toEqual(parseBatch(good, 'b.json'));
    const bad = '[\n{"module":"a"},\n{"module": b}\n]';
    let expected = '';
    try {
      parseBatch(bad, 'b.json');
    } catch (err) {
      expected = (err as Error).message;
    }
    expect(expected).toMatch(/^b\.json:\d+:\d+: not valid JSON/);
    await expect(readStream(chunks(Buffer.from(bad), 4), 'b.json')).rejects.toThrow(expected);
  });

  test('bytes that are not UTF-8 are refused, naming the line, never replaced', async () => {
    const bad = Buffer.concat([
      Buffer.from('{"module":"a"}\n{"module":"b"}\n{"module":"'),
      Buffer.from([0xc3, 0x28]), // a lead byte without its continuation
      Buffer.from('"}\n'),
    ]);
    await expect(readStream(chunks(bad, 5), 'b.ndjson')).rejects.toThrow(
      'b.ndjson:3: not valid UTF-8 (refused rather than replaced)',
    );
    const arr = Buffer.concat([Buffer.from('[\n{"module":"'), Buffer.from([0xff]), Buffer.from('"}\n]')]);
    await expect(readStream(chunks(arr, 3), 'b.json')).rejects.toThrow('b.json:2: not valid UTF-8');
  });

  test('an empty stream says what was expected', async () => {
    await expect(readStream(Readable.from([Buffer.from('\n \n')]), 'e.ndjson')).rejects.toThrow(
      'e.ndjson: empty; expected a JSON array of tasks, or one task per line (NDJSON)',
    );
  });
});

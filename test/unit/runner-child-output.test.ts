/**
 * A worker's output cut into log lines (runner/child-output.ts), fed through a real stream: lines up
 * to the limit are logged as written, longer ones are cut once with a marker, and the bytes logged
 * per attempt are bounded, with the rest counted.
 */
import { once } from 'node:events';
import { PassThrough } from 'node:stream';
import { ChildOutput } from '../../runner/child-output';
import { capturingLogger } from '../helpers/capture';

async function feed(
  chunks: string[],
  limits = { lineBytes: 8, attemptBytes: 200 },
  between?: (o: ChildOutput) => void,
) {
  const { logger, lines } = capturingLogger();
  const output = new ChildOutput(logger, limits);
  const stream = new PassThrough();
  output.attach(stream, 'stdout');
  for (const c of chunks) {
    stream.write(c);
    between?.(output);
  }
  stream.end();
  await once(stream, 'end');
  return lines.map((l) => ({
    level: l.level,
    message: l.message,
    ...(l.droppedBytes ? { droppedBytes: l.droppedBytes } : {}),
  }));
}

describe('a worker’s output in the runner log', () => {
  test('a line of exactly the limit is logged whole, across chunks; \\r\\n and a last line without newline too', async () => {
    expect(await feed(['1234', '5678\nab', 'c\r\nxy'])).toEqual([
      { level: 'info', message: '12345678' },
      { level: 'info', message: 'abc' },
      { level: 'info', message: 'xy' },
    ]);
  });

  test('a longer line is logged once at the limit with a marker; the rest of it, up to its newline, is dropped', async () => {
    expect(await feed(['123456789abcdef', 'ghij\nok\n'])).toEqual([
      { level: 'info', message: '12345678 … [line cut at 8 bytes; the rest of it is not logged]' },
      { level: 'info', message: 'ok' },
    ]);
  });

  test('past the bytes per attempt, one line says the rest is not logged; a new attempt renews the budget and says what was left out', async () => {
    const lines = await feed(
      ['aaaaaaa\nbbbbbbb\nccccccc\ndddd\n', 'eeee\n'],
      { lineBytes: 8, attemptBytes: 20 },
      (o) => o.renew(),
    );
    expect(lines).toEqual([
      { level: 'info', message: 'aaaaaaa' },
      { level: 'info', message: 'bbbbbbb' },
      { level: 'warn', message: 'task output reached 20 bytes for this attempt; the rest is not logged' },
      { level: 'warn', message: 'task output not logged: over the limit per attempt', droppedBytes: 11 },
      { level: 'info', message: 'eeee' },
    ]);
  });
});

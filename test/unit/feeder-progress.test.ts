import { Writable } from 'node:stream';
import { batchProgress } from '../../feeder/progress';
import type { TaskOutcome } from '../../protocol/schemas';

class Capture extends Writable {
  text = '';
  isTTY = false;
  override _write(chunk: Buffer, _enc: string, done: () => void): void {
    this.text += chunk.toString();
    done();
  }
}

const done = (id: string): TaskOutcome => ({ id, state: 'done', attempts: 1 });

describe('batch progress', () => {
  test('is a fraction from 0 to 1: finished tasks count 1, running ones their own reported fraction', () => {
    const out = new Capture();
    const p = batchProgress(4, out, { intervalMs: 60_000 });
    expect(p.fraction()).toBe(0);
    p.task('a', 0.5);
    expect(p.fraction()).toBe(0.125);
    p.add(done('a'));
    p.task('a', 0.2); // late progress of a finished task changes nothing
    p.task('b', 50); // out of range: clamped to 1
    expect(p.fraction()).toBe(0.5);
    p.add(done('b'));
    p.add(done('c'));
    p.add(done('d'));
    p.stop();
    expect(p.fraction()).toBe(1);
    expect(out.text.trimEnd().split('\n').at(-1)).toMatch(
      /^4\/4 finished, 100%: done 4, failed 0, cancelled 0/,
    );
  });
});

/**
 * The master's batch lines are bounded: a feeder adding one task at a time makes a batch per add,
 * and the log gets at most BATCH_LINES "batch added" and "batch finished" lines per window; one line
 * says how many more there were.
 */
import { BATCH_LINES, Monitor } from '../../master/http/monitor';
import { newTaskRecord } from '../../master/task-record';
import { capturingLogger } from '../helpers/capture';

describe('monitor: batch lines', () => {
  test('single-task batches log at most BATCH_LINES added and finished lines per window, then say how many were left out', () => {
    const { logger, lines } = capturingLogger();
    const monitor = new Monitor({ logger });
    const n = BATCH_LINES + 30;
    const tasks = Array.from({ length: n }, (_, i) =>
      newTaskRecord({
        id: `t${i}`,
        module: 'noop',
        batch: `b${i}`,
        created: Date.now(),
        state: 'ready',
        maxAttempts: 1,
      }),
    );
    for (const t of tasks) monitor.added([t]);
    for (const t of tasks) {
      t.state = 'done';
      monitor.changed(t, 'ready');
    }
    const named = (m: string) => lines.filter((l) => l.message === m);
    expect(named('batch added')).toHaveLength(BATCH_LINES);
    expect(named('batch finished')).toHaveLength(BATCH_LINES);
    expect(named('batch added')[0]).toMatchObject({ level: 'info', batch: 'b0', tasks: 1 });

    monitor.flushLines();
    expect(named('batch added (and 30 more like it, not logged)')).toEqual([
      expect.objectContaining({ level: 'info', suppressed: 30 }),
    ]);
    expect(named('batch finished (and 30 more like it, not logged)')).toEqual([
      expect.objectContaining({ level: 'info', suppressed: 30 }),
    ]);
    // Every batch is still counted, logged or not.
    expect(monitor.recentBatches(n)).toHaveLength(n);
    expect(monitor.counts.done).toBe(n);
  });
});

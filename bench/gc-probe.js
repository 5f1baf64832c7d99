// Preloaded into a master by bench/queued-memory.ts (`node --expose-gc --require bench/gc-probe.js`):
// on SIGUSR2 it collects all garbage, prints the process's memory as one line on stderr (and with
// TASKMASTER_BENCH_SNAPSHOT set, writes a heap snapshot to that file), so the
// benchmark reads what the live objects hold rather than when the collector last ran. Plain
// JavaScript: it loads before the TypeScript hook.
'use strict';
process.on('SIGUSR2', () => {
  if (typeof global.gc === 'function') {
    global.gc();
    global.gc();
  }
  const m = process.memoryUsage();
  // The benchmark's --snapshot: where to write a heap snapshot of what is live after the collection.
  const file = process.env.TASKMASTER_BENCH_SNAPSHOT;
  if (file) require('node:v8').writeHeapSnapshot(file);
  process.stderr.write(
    `gc-probe ${JSON.stringify({ gc: typeof global.gc === 'function', rss: m.rss, heapTotal: m.heapTotal, heapUsed: m.heapUsed, external: m.external, arrayBuffers: m.arrayBuffers })}\n`,
  );
});

// Preloaded into a master by bench/queued-memory.ts (`node --expose-gc --require bench/gc-probe.js`):
// on SIGUSR2 it collects all garbage and prints the process's memory as one line on stderr, so the
// benchmark reads what the live objects hold rather than when the collector last ran. Plain
// JavaScript: it loads before the TypeScript hook.
'use strict';
process.on('SIGUSR2', () => {
  if (typeof global.gc === 'function') {
    global.gc();
    global.gc();
  }
  const m = process.memoryUsage();
  process.stderr.write(
    `gc-probe ${JSON.stringify({ gc: typeof global.gc === 'function', rss: m.rss, heapUsed: m.heapUsed, external: m.external, arrayBuffers: m.arrayBuffers })}\n`,
  );
});

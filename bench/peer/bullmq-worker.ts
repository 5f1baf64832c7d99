/**
 * A BullMQ worker process for the peer benchmark, forked with an IPC channel:
 *
 *   argv: PORT QUEUE CONCURRENCY LIFETIME_MS
 *   → { type: 'ready' }                 once connected (the worker is not fetching yet)
 *   ← 'run'                             start fetching jobs
 *   → { type: 'progress', completed, firstAt, lastAt }   coalesced, every few ms while jobs complete
 *   ← 'close'                           finish the active jobs and exit
 *
 * Exits when the channel closes (the benchmark is gone) or after LIFETIME_MS, whatever happens.
 */
import { Worker } from 'bullmq';

const [port, queue, concurrency, lifetimeMs] = process.argv.slice(2);
const send = (msg: object) => process.send?.(msg);

setTimeout(() => process.exit(1), Number(lifetimeMs)).unref();
process.on('disconnect', () => process.exit(0));

async function main(): Promise<void> {
  // The processor does nothing: the benchmark measures the queue, not the work.
  const worker = new Worker(queue, async () => null, {
    connection: { host: '127.0.0.1', port: Number(port), maxRetriesPerRequest: null },
    concurrency: Number(concurrency),
    autorun: false,
  });
  worker.on('error', (err) => process.stderr.write(`worker error: ${err.message}\n`));
  let completed = 0;
  let firstAt = 0;
  let lastAt = 0;
  let flush: NodeJS.Timeout | undefined;
  worker.on('completed', () => {
    lastAt = Date.now();
    firstAt ||= lastAt;
    completed++;
    flush ??= setTimeout(() => {
      flush = undefined;
      send({ type: 'progress', completed, firstAt, lastAt });
    }, 5);
  });
  await worker.waitUntilReady();
  process.on('message', (msg) => {
    if (msg === 'run') void worker.run();
    if (msg === 'close') void worker.close().then(() => process.exit(0));
  });
  send({ type: 'ready' });
}

main().catch((err: unknown) => {
  process.stderr.write(`bullmq worker failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});

/**
 * A BullMQ worker process for the peer benchmark, forked with an IPC channel:
 *
 *   argv: PORT QUEUE CONCURRENCY LIFETIME_MS PROCESSOR
 *   → { type: 'ready' }                 once connected (the worker is not fetching yet)
 *   ← 'run'                             start fetching jobs
 *   → { type: 'progress', generation, completed, firstAt, lastAt }   coalesced, every few ms while
 *                                       jobs complete, counted since the last 'reset'
 *   ← { type: 'reset', generation }     count from zero again (after a warm-up), under this generation
 *   ← 'close'                           finish the active jobs and exit
 *
 * PROCESSOR is `inline` (the processor a function in this process), `process` (BullMQ's sandbox: the
 * processor a file, run in child processes) or `thread` (the sandbox in worker threads). The file is
 * bench/tasks/noop.js, the module taskmaster's runners run.
 *
 * Exits when the channel closes (the benchmark is gone) or after LIFETIME_MS, whatever happens.
 */
import path from 'node:path';
import { Worker } from 'bullmq';

const [port, queue, concurrency, lifetimeMs, processor] = process.argv.slice(2);
const NOOP_FILE = path.resolve(__dirname, '..', 'tasks', 'noop.js');
const send = (msg: object) => process.send?.(msg);

setTimeout(() => process.exit(1), Number(lifetimeMs)).unref();
process.on('disconnect', () => process.exit(0));

async function main(): Promise<void> {
  if (!['inline', 'process', 'thread'].includes(processor)) throw new Error(`processor: ${processor}`);
  // The processor does nothing: the benchmark measures the queue, not the work.
  const worker = new Worker(queue, processor === 'inline' ? async () => null : NOOP_FILE, {
    connection: { host: '127.0.0.1', port: Number(port), maxRetriesPerRequest: null },
    concurrency: Number(concurrency),
    autorun: false,
    useWorkerThreads: processor === 'thread',
  });
  worker.on('error', (err) => process.stderr.write(`worker error: ${err.message}\n`));
  // A sandbox pipes each child's output into this process's: one listener per child on each stream.
  process.stdout.setMaxListeners(Number(concurrency) + 10);
  process.stderr.setMaxListeners(Number(concurrency) + 10);
  let generation = 0;
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
      send({ type: 'progress', generation, completed, firstAt, lastAt });
    }, 5);
  });
  await worker.waitUntilReady();
  process.on('message', (msg: string | { type: string; generation: number }) => {
    if (msg === 'run') void worker.run();
    if (msg === 'close') void worker.close().then(() => process.exit(0));
    if (typeof msg === 'object' && msg.type === 'reset') {
      ({ generation } = msg);
      completed = firstAt = lastAt = 0;
    }
  });
  send({ type: 'ready' });
}

main().catch((err: unknown) => {
  process.stderr.write(`bullmq worker failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});

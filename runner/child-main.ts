/**
 * Entry point of a runner's child process (forked by child-handle.ts with tsx's CommonJS hook, so
 * task modules and their dependencies may be TypeScript). Wires the IPC channel to the processor and
 * makes sure the process never outlives its runner.
 *
 * An uncaught error cannot be pinned on one task when several share the process, so the child dies
 * and the parent fails every attempt it held with ECRASH (the master retries them); the error is sent
 * first so the crash can be explained in the runner's log.
 */
import { Worker } from 'node:worker_threads';
import { fromThrown } from '../protocol/errors';
import { ChildProcessor } from './child-processor';
import { ParentCommand, type ToChild, type ToParent } from './sandbox-messages';

if (!process.send) throw new Error('runner/child-main must be started by the runner (no IPC channel)');

// Captured before any task runs: a task replacing process.send must not rewrite its neighbours'
// reports (Node's IPC serialises with its own captured JSON, not the global one).
const processSend = process.send.bind(process);

function send(msg: ToParent): void {
  if (process.connected) processSend(msg);
}

const processor = new ChildProcessor(send);
process.on('message', (msg) => processor.handle(msg as ToChild));

// The runner went away without stopping this child: nothing left to report to, and nobody left to
// kill what the tasks started, so the whole process group goes (this child leads it).
process.on('disconnect', () => {
  try {
    process.kill(-process.pid, 'SIGKILL');
  } catch {
    process.exit(0);
  }
});

let dying = false;
function die(err: unknown): void {
  if (dying) return;
  dying = true;
  const error = fromThrown(err, 'ECRASH');
  if (!process.connected) process.exit(1);
  processSend({ cmd: ParentCommand.Fatal, error } satisfies ToParent, () => process.exit(1));
  setTimeout(() => process.exit(1), 1000).unref();
}
process.on('uncaughtException', die);
process.on('unhandledRejection', die);

/**
 * 'disconnect' cannot fire while a task spins on the event loop, and a runner killed with SIGKILL
 * runs no exit handler. A worker thread has its own loop, so it can still notice that the runner is
 * gone and end this process. It costs about 10 MB per child; the runner's `orphanWatchdog: false`
 * (passed as `--no-orphan-watchdog`) turns it off.
 */
const WATCHDOG = `
const { workerData } = require('node:worker_threads');
setInterval(() => {
  try { process.kill(workerData.ppid, 0); } catch {
    // The child leads its process group: the processes its tasks started in it go too.
    try { process.kill(-workerData.pid, 'SIGKILL'); } catch { process.kill(workerData.pid, 'SIGKILL'); }
  }
}, workerData.intervalMs);
`;
if (!process.argv.includes('--no-orphan-watchdog')) {
  const watchdog = new Worker(WATCHDOG, {
    eval: true,
    workerData: { ppid: process.ppid, pid: process.pid, intervalMs: 1000 },
    stdout: false,
    stderr: false,
  });
  watchdog.unref();
}

send({ cmd: ParentCommand.Ready });

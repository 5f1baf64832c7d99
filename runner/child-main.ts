/**
 * Entry point of a runner's child process (started by child-handle.ts with tsx's CommonJS hook, so
 * task modules and their dependencies may be TypeScript). Wires the channel to the runner
 * (worker-channel.ts, on file descriptor 3) to the processor and makes sure the process never
 * outlives its runner.
 *
 * An uncaught error cannot be pinned on one task when several share the process, so the child dies
 * and the parent fails every attempt it held with ECRASH (the master retries them); the error is sent
 * first so the crash can be explained in the runner's log.
 */
import net from 'node:net';
import { Worker } from 'node:worker_threads';
import { capError, fromThrown } from '../protocol/errors';
import { ChildProcessor } from './child-processor';
import { ParentCommand, type ToChild, type ToParent } from './sandbox-messages';
import { WORKER_CHANNEL_FD, WORKER_CHANNEL_VAR, WorkerChannel } from './worker-channel';

if (process.env[WORKER_CHANNEL_VAR] !== String(WORKER_CHANNEL_FD))
  throw new Error('runner/child-main must be started by the runner (no channel to it)');
// Task code has no business with it; its own child processes must not take it for theirs.
delete process.env[WORKER_CHANNEL_VAR];

const channel = new WorkerChannel(new net.Socket({ fd: WORKER_CHANNEL_FD, readable: true, writable: true }));

function send(msg: ToParent): void {
  channel.send(msg);
}

const processor = new ChildProcessor(send, { flush: () => channel.flush() });
channel.on('message', (msg) => processor.handle(msg as ToChild));

// The runner went away without stopping this child: nothing left to report to, and nobody left to
// kill what the tasks started, so the whole process group goes (this child leads it).
channel.on('close', () => {
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
  const error = capError(fromThrown(err, 'ECRASH'));
  if (!channel.open) process.exit(1);
  channel.send({ cmd: ParentCommand.Fatal, error } satisfies ToParent, () => process.exit(1));
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

/**
 * Entry point of a runner's worker thread (`--isolation thread`; started by thread-handle.ts with
 * tsx's CommonJS hook, so task modules may be TypeScript). The same processor as a child process
 * (child-processor.ts) behind the same protocol (sandbox-messages.ts): JSON texts over the thread's
 * port, batched per tick (message-batch.ts), so a thread is a process in everything but isolation.
 *
 * An uncaught error cannot be pinned on one task when several share the thread, so the thread ends
 * and the runner fails every attempt it held with ECRASH; the error is sent first so the crash can be
 * explained. What a thread cannot keep to itself, and what is guarded here, is listed in
 * docs/runners.md.
 */
import { getHeapStatistics } from 'node:v8';
import { isMainThread, parentPort } from 'node:worker_threads';
import { capError, fromThrown, TaskmasterError } from '../protocol/errors';
import { ChildProcessor } from './child-processor';
import { MessageBatch, unpack } from './message-batch';
import { ParentCommand, type ToChild, type ToParent } from './sandbox-messages';

if (isMainThread || !parentPort) throw new Error('runner/thread-main must be started by the runner');
const port = parentPort;

// Captured before any task runs: a task replacing them must not change what its neighbours' reports say.
const JSONStringify = JSON.stringify;
const JSONParse = JSON.parse;
const post = port.postMessage.bind(port);

const batch = new MessageBatch((text) => post(text));
function send(msg: ToParent): void {
  batch.add(JSONStringify(msg));
}

/**
 * Recycling's measure for a thread: its own heap (committed, plus memory held outside it by its
 * buffers). The resident set is the whole runner's and says nothing about this thread.
 */
function heapInUse(): number {
  const h = getHeapStatistics();
  return h.total_heap_size + h.external_memory;
}

const processor = new ChildProcessor(send, { flush: () => batch.flush(), memory: heapInUse });
port.on('message', (text: unknown) => {
  if (typeof text !== 'string') return;
  for (const msg of unpack(JSONParse(text))) processor.handle(msg as ToChild);
});

// `process.exit()` in a thread ends the thread, not the runner (the runner reports ECRASH); what was
// reported before it still goes.
process.on('exit', () => batch.flush());

// Signalling the runner's own process would end every thread in it, and the runner with them.
const kill = process.kill.bind(process);
process.kill = (pid: number, signal?: string | number): true => {
  if (pid === process.pid || pid === 0 || pid === -process.pid)
    throw new TaskmasterError(
      'ETASK',
      "process.kill of the runner's own process from a task running in a thread is refused",
    );
  return kill(pid, signal);
};

let dying = false;
function die(err: unknown): void {
  if (dying) return;
  dying = true;
  batch.flush();
  post(
    JSONStringify({
      cmd: ParentCommand.Fatal,
      error: capError(fromThrown(err, 'ECRASH')),
    } satisfies ToParent),
  );
  process.exit(1);
}
process.on('uncaughtException', die);
process.on('unhandledRejection', die);

send({ cmd: ParentCommand.Ready });

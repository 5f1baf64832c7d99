/**
 * Tells the two kinds of database failure apart, so the writer can treat each as it must:
 *
 *   transient  the connection, the server or the network failed (closed socket, timeout, no server,
 *              server shutting down): nothing is wrong with the documents; retry with backoff.
 *   refused    the server (or the driver, before sending) refused a document for what it holds:
 *              retrying can never succeed; that one document's task fails with EPERSIST.
 *
 * A refusal inside a bulk write names the document by its index; a refusal of the whole command
 * (some servers answer a bad document that way) names none, and the writer splits the batch to
 * find it.
 *
 * A full disk is transient, whatever code the server gives it (FerretDB's SQLite answers
 * "database or disk is full" as an InternalError, code 1, which would otherwise be a refusal): no
 * document is at fault, and writes succeed again once space is freed. Its failure says so (`cause`),
 * so that readiness can name it.
 */
import { isFenced } from './fence';
import { UnstorableValueError } from '../../models/codec';

/** Server codes that mean "try again later", from MongoDB's error code list. */
const TRANSIENT_CODES = new Set([
  6, // HostUnreachable
  7, // HostNotFound
  50, // MaxTimeMSExpired
  89, // NetworkTimeout
  91, // ShutdownInProgress
  189, // PrimarySteppedDown
  262, // ExceededTimeLimit
  9001, // SocketException
  10107, // NotWritablePrimary
  11600, // InterruptedAtShutdown
  11602, // InterruptedDueToReplStateChange
  13435, // NotPrimaryNoSecondaryOk
  13436, // NotPrimaryOrSecondary
  14031, // OutOfDiskSpace
]);

/** What a server says when its disk is full: SQLite (FerretDB), MongoDB, the operating system. */
const DISK_FULL = /database or disk is full|no space left on device|\bENOSPC\b|OutOfDiskSpace/i;

export const DUPLICATE_KEY = 11000;

export interface WriteFailure {
  kind: 'transient' | 'refused';
  /** For a refusal inside a bulk write: index of the refused document within the command. */
  index?: number;
  /** Documents of the command written before the failure (ordered writes). */
  written: number;
  code?: number;
  message: string;
  /** Why a transient failure happened, when it is known: `disk full`. */
  cause?: 'disk full';
  /** Refused before it was sent: this master lost its lease (master/store/fence.ts). Never retried. */
  fenced?: boolean;
}

export function classify(err: unknown): WriteFailure {
  const e = err as {
    name?: string;
    code?: number;
    message?: string;
    writeErrors?:
      { index: number; code: number; errmsg?: string }[] | { index: number; code: number; errmsg?: string };
    insertedCount?: number;
    result?: { insertedCount?: number };
    errorLabels?: string[];
    hasErrorLabel?: (l: string) => boolean;
  };
  const message = e?.message ?? String(err);
  const written = e?.insertedCount ?? e?.result?.insertedCount ?? 0;
  if (isFenced(err)) return { kind: 'transient', written: 0, message, fenced: true };
  if (err instanceof UnstorableValueError) return { kind: 'refused', written: 0, message };
  const we = Array.isArray(e?.writeErrors) ? e.writeErrors[0] : e?.writeErrors;
  if (DISK_FULL.test(`${message} ${we?.errmsg ?? ''}`) || e?.code === 14031 || we?.code === 14031)
    return { kind: 'transient', written, code: we?.code ?? e?.code, message, cause: 'disk full' };
  if (we && typeof we.index === 'number') {
    if (TRANSIENT_CODES.has(we.code)) return { kind: 'transient', written, code: we.code, message };
    return { kind: 'refused', index: we.index, written, code: we.code, message: we.errmsg ?? message };
  }
  const name = e?.name ?? '';
  if (
    /Network|Timeout|ServerSelection|PoolCleared|NotConnected|Topology|ServerClosed/.test(name) ||
    (typeof e?.hasErrorLabel === 'function' && e.hasErrorLabel('RetryableWriteError'))
  )
    return { kind: 'transient', written, message };
  if (typeof e?.code === 'number') {
    return TRANSIENT_CODES.has(e.code)
      ? { kind: 'transient', written, code: e.code, message }
      : { kind: 'refused', written, code: e.code, message };
  }
  // BSON errors raised by the driver before sending (a document over 16 MB, a key it cannot write).
  if (/BSON|larger than the maximum|too large|Invalid key/i.test(`${name} ${message}`))
    return { kind: 'refused', written: 0, message };
  return { kind: 'transient', written, message };
}

/**
 * Message sizes both ends agree on. The master's `maxMessageBytes` bounds every Socket.IO message it
 * reads (checked before the token, so it also bounds what an unauthenticated client can make it
 * buffer); a task, a result or a batch must fit in one message with its envelope around it.
 */

/** Room kept in a message for the envelope around its payload (event name, framing, batch fields). */
export const ENVELOPE_BYTES = 16 * 1024;

/** The largest payload (a task, a result, a batch's tasks) one message of `maxMessageBytes` carries. */
export function messageRoom(maxMessageBytes: number): number {
  return maxMessageBytes - ENVELOPE_BYTES;
}

/** Longest error message a task's outcome carries; the rest is cut, with a marker saying how much. */
export const MAX_ERROR_MESSAGE_CHARS = 16 * 1024;

/** Largest error `details` (as JSON) an outcome carries; larger ones are replaced by their size. */
export const MAX_ERROR_DETAILS_BYTES = 64 * 1024;

/** Longest error code: codes are short words (`ETASK`, a task's own `EPAYMENT`). */
export const MAX_ERROR_CODE_CHARS = 64;

/**
 * Largest `data` a runner announces (as JSON): the status API and every dashboard tick carry every
 * runner's data, once a second to each dashboard.
 */
export const MAX_RUNNER_DATA_BYTES = 4096;

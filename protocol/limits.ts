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

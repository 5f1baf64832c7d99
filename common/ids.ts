/**
 * Fresh ids for tasks and batches: 24 hex digits in ObjectId's layout (4 bytes of seconds, 5 random
 * bytes fixed per process, a 3-byte counter), so they sort by creation as stored ObjectIds do, without
 * loading a database driver.
 */
import { randomBytes } from 'node:crypto';

const processPart = randomBytes(5).toString('hex');
let counter = randomBytes(3).readUIntBE(0, 3);

export function newId(): string {
  counter = (counter + 1) & 0xffffff;
  const seconds = Math.floor(Date.now() / 1000) >>> 0;
  return seconds.toString(16).padStart(8, '0') + processPart + counter.toString(16).padStart(6, '0');
}

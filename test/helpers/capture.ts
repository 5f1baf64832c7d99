/** Small helpers for unit tests: a logger whose lines can be read, and the error a call throws. */
import { Writable } from 'node:stream';
import winston from 'winston';
import type { TaskmasterError } from '../../protocol/errors';

/** A real winston logger whose JSON lines the test can read. */
export function capturingLogger(): { logger: winston.Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
      cb();
    },
  });
  const logger = winston.createLogger({
    level: 'debug',
    format: winston.format.json(),
    transports: [new winston.transports.Stream({ stream })],
  });
  return { logger, lines };
}

/** The error `fn` throws (fails the test if it throws none). */
export function errorOf(fn: () => unknown): TaskmasterError {
  try {
    fn();
  } catch (err) {
    return err as TaskmasterError;
  }
  throw new Error('expected an error');
}

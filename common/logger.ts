/**
 * Scoped winston loggers: readable lines in a terminal, JSON lines when stdout is not a TTY or the
 * format is forced. Every role creates one root logger and passes children scoped with
 * `{ role, runnerId, taskId }`; nothing in the project writes to `console` directly.
 */
import winston from 'winston';

export type LogFormat = 'pretty' | 'json';
export type Logger = winston.Logger;

export interface LoggerOptions {
  /** Default: `info`, or `TASKMASTER_LOG_LEVEL`. */
  level?: string;
  /** Default: `pretty` on a TTY, `json` otherwise. */
  format?: LogFormat;
  /** Fields added to every line, e.g. `{ role: 'master' }`. */
  meta?: Record<string, unknown>;
  /** Log to stderr instead of stdout (the CLI keeps stdout for results). */
  stderr?: boolean;
  silent?: boolean;
}

export function createLogger(opts: LoggerOptions = {}): Logger {
  const stream = opts.stderr ? process.stderr : process.stdout;
  const format = opts.format ?? (stream.isTTY ? 'pretty' : 'json');
  const pretty = winston.format.printf((info) => {
    const { level, message, timestamp, role, ...rest } = info as Record<string, unknown>;
    const extra = Object.keys(rest).length
      ? ' ' +
        Object.entries(rest)
          .filter(([k]) => typeof k === 'string')
          .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
          .join(' ')
      : '';
    return `${String(timestamp)} ${String(level)} [${String(role ?? '-')}] ${String(message)}${extra}`;
  });
  return winston.createLogger({
    level: opts.level ?? process.env.TASKMASTER_LOG_LEVEL ?? 'info',
    silent: opts.silent ?? false,
    defaultMeta: opts.meta,
    format:
      format === 'json'
        ? winston.format.combine(winston.format.timestamp(), winston.format.json())
        : winston.format.combine(
            winston.format.timestamp({ format: 'HH:mm:ss.SSS' }),
            winston.format.colorize(),
            pretty,
          ),
    transports: [new winston.transports.Stream({ stream })],
  });
}

/** A logger that drops everything, for library users who pass none. */
export function silentLogger(): Logger {
  return createLogger({ silent: true });
}

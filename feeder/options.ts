/**
 * The feeder's options: a documented interface with defaults (feeder/config.ts turns flags and
 * environment into these for the CLI).
 */
import type { Logger } from '../common/logger';
import { ACK_TIMEOUT_MS } from '../protocol/events';

export interface FeederOptions {
  /**
   * Master URL, or several (an active master and its standbys): a list, or comma-separated URLs. The
   * feeder follows a standby to the active master and tries the others when it loses it. Default
   * `http://127.0.0.1:3232`.
   */
  master?: string | string[];
  /** Token for the master's handshake. Default: none. */
  token?: string;
  /** CA certificates (PEM) to verify an https master with, instead of the system's: a private CA. Default none. */
  ca?: string | string[];
  /**
   * How long `ready()` — and so `add()`, `work()`, `cancel()` — wait for a connection; also how long an
   * add whose answer the connection lost is sent again (its tasks all named). Default 30 000 ms.
   */
  connectTimeoutMs?: number;
  /** How long each request waits for the master's acknowledgement. Default 30 000 ms. */
  ackTimeoutMs?: number;
  /** First reconnect delay; it doubles with jitter up to `reconnectDelayMaxMs`. Default 200 ms. */
  reconnectDelayMs?: number;
  /** Longest reconnect delay. Default 5000 ms. */
  reconnectDelayMaxMs?: number;
  /**
   * The master's message limit (its `maxMessageBytes`): a batch larger than this is sent in several
   * `tasks:add` messages under one batch name. Default 1 MB, the master's default.
   */
  maxMessageBytes?: number;
  /** Default: a silent logger. */
  logger?: Logger;
}

export type FeederDefaults = Required<
  Pick<
    FeederOptions,
    | 'master'
    | 'connectTimeoutMs'
    | 'ackTimeoutMs'
    | 'reconnectDelayMs'
    | 'reconnectDelayMaxMs'
    | 'maxMessageBytes'
  >
>;

export const FEEDER_DEFAULTS: Readonly<FeederDefaults> = Object.freeze({
  master: 'http://127.0.0.1:3232',
  connectTimeoutMs: ACK_TIMEOUT_MS,
  ackTimeoutMs: ACK_TIMEOUT_MS,
  reconnectDelayMs: 200,
  reconnectDelayMaxMs: 5000,
  maxMessageBytes: 1024 * 1024,
});

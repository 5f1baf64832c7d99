import type { Logger } from '../common/logger';

export interface FeederOptions {
  /** Master URL. Default `http://127.0.0.1:3232`. */
  master?: string;
  /** Token for the master's handshake. */
  token?: string;
  logger?: Logger;
}

export const FEEDER_DEFAULTS = Object.freeze({ master: 'http://127.0.0.1:3232' });

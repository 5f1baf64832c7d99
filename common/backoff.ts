/**
 * Exponential backoff with full jitter, capped: the delay before retry `n` (0-based) is a random
 * value in [base, min(cap, base * factor^n)]. Jitter keeps many clients from retrying in step.
 */
export interface BackoffOptions {
  /** First delay in ms. */
  base: number;
  /** Largest delay in ms. */
  cap: number;
  /** Growth per retry; 1 gives a fixed delay. Default 2. */
  factor?: number;
  /** Spread the delay randomly below its ceiling. Default true. */
  jitter?: boolean;
}

export function backoffDelay(
  attempt: number,
  opts: BackoffOptions,
  random: () => number = Math.random,
): number {
  const ceiling = Math.min(opts.cap, opts.base * Math.pow(opts.factor ?? 2, Math.max(0, attempt)));
  if (opts.jitter === false) return ceiling;
  return Math.round(opts.base + random() * Math.max(0, ceiling - opts.base));
}

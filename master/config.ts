/**
 * The master's settings from flags and environment, validated once with readable errors
 * (`--port: must be an integer between 0 and 65535 (got "abc")`). Flags win over environment
 * variables, which win over the defaults in master/options.ts.
 */
import { z } from 'zod';
import type { MasterOptions } from './options';

export interface MasterFlags {
  port?: string;
  host?: string;
  token?: string;
  insecure?: boolean;
  mongoUrl?: string;
  db?: string;
  maxAttempts?: string;
  queueLimit?: string;
  sacredGuarantees?: boolean;
  holdSimilarWork?: boolean;
}

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|::1|localhost)$/;

const intIn = (flag: string, min: number, max: number) =>
  z
    .string()
    .optional()
    .transform((v, ctx) => {
      if (v === undefined || v === '') return undefined;
      const n = Number(v);
      if (!Number.isInteger(n) || n < min || n > max) {
        ctx.addIssue({ code: 'custom', message: `${flag}: must be an integer between ${min} and ${max} (got "${v}")` });
        return z.NEVER;
      }
      return n;
    });

/** Builds the master's options (without the database URL when none is configured: the CLI resolves one). */
export function masterConfig(flags: MasterFlags, env: NodeJS.ProcessEnv = process.env): Omit<MasterOptions, 'mongoUrl'> & { mongoUrl?: string } {
  const schema = z.object({
    port: intIn('--port / TASKMASTER_PORT', 0, 65535),
    host: z.string().min(1, '--host / TASKMASTER_HOST: must not be empty').optional(),
    token: z.string().min(8, '--token / TASKMASTER_TOKEN: must be at least 8 characters').optional(),
    mongoUrl: z
      .string()
      .regex(/^mongodb(\+srv)?:\/\//, '--mongo-url / MONGO_URL: must start with mongodb:// or mongodb+srv://')
      .optional(),
    maxAttempts: intIn('--max-attempts', 1, 1000),
    queueLimit: intIn('--queue-limit / TASKMASTER_QUEUE_LIMIT', 1, 100_000_000),
  });
  const parsed = schema.safeParse({
    port: flags.port ?? env.TASKMASTER_PORT,
    host: flags.host ?? env.TASKMASTER_HOST,
    token: flags.token ?? (env.TASKMASTER_TOKEN || undefined),
    mongoUrl: flags.mongoUrl ?? (env.MONGO_URL || undefined),
    maxAttempts: flags.maxAttempts,
    queueLimit: flags.queueLimit ?? env.TASKMASTER_QUEUE_LIMIT,
  });
  if (!parsed.success) throw new Error(`invalid master settings:\n  ${parsed.error.issues.map((i) => i.message).join('\n  ')}`);
  const c = parsed.data;
  const host = c.host ?? '127.0.0.1';
  if (!LOOPBACK.test(host) && !c.token && !flags.insecure) {
    throw new Error(
      `refusing to listen on ${host} without a token: set TASKMASTER_TOKEN (or --token) so only your runners and feeders can connect, or pass --insecure`,
    );
  }
  return {
    port: c.port,
    host,
    token: c.token,
    insecure: flags.insecure ?? false,
    mongoUrl: c.mongoUrl,
    dbName: flags.db,
    maxAttempts: c.maxAttempts,
    queueLimit: c.queueLimit,
    sacredGuarantees: flags.sacredGuarantees,
    holdSimilarWork: flags.holdSimilarWork,
  };
}

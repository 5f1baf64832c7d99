/**
 * Settings from command-line flags and the environment, for the per-role config modules
 * (master/config.ts, runner/config.ts, feeder/config.ts). A flag wins over its environment variable;
 * what neither gives is left out, so the role's defaults apply. Every value is checked with zod and
 * every bad one is reported at once, named the way the user gave it:
 *
 *   --port: must be an integer between 0 and 65535 (got "abc")
 *   TASKMASTER_WORKERS: must be an integer between 1 and 1024 (got "0")
 *
 * The error is a TaskmasterError with code EVALIDATION, so the CLI can exit with its usage code.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import { z } from 'zod';
import { TaskmasterError } from '../protocol/errors';
import { issueText, type Issue } from '../protocol/issues';
import type { LogFormat } from './logger';

export interface Setting<T> {
  /** The flag as typed, e.g. `--port`. */
  flag: string;
  /** The environment variable, if there is one. */
  env?: string;
  /** Turns the variable's text into what the flag would give (e.g. a path list into an array). */
  fromEnv?: (text: string) => unknown;
  schema: z.ZodType<T>;
}

export type SettingsOf<S extends Record<string, Setting<unknown>>> = {
  [K in keyof S]?: S[K] extends Setting<infer T> ? T : never;
};

/** `path` is where the value came from: the flag or the variable. */
export type SettingIssue = Issue;

/**
 * Reads every setting in `specs` from `flags` (keyed like `specs`, as commander gives them) and
 * `env`; throws one error listing every bad value.
 */
export function readSettings<S extends Record<string, Setting<unknown>>>(
  what: string,
  specs: S,
  flags: Record<string, unknown>,
  env: NodeJS.ProcessEnv,
): SettingsOf<S> {
  const out: Record<string, unknown> = {};
  const issues: SettingIssue[] = [];
  for (const [key, spec] of Object.entries(specs)) {
    let raw: unknown;
    let source: string;
    if (flags[key] !== undefined) {
      raw = flags[key];
      source = spec.flag;
    } else if (spec.env && env[spec.env] !== undefined && env[spec.env] !== '') {
      const text = env[spec.env] as string;
      raw = spec.fromEnv ? spec.fromEnv(text) : text;
      source = spec.env;
    } else continue;
    const parsed = spec.schema.safeParse(raw);
    if (parsed.success) {
      if (parsed.data !== undefined) out[key] = parsed.data;
      continue;
    }
    for (const issue of parsed.error.issues) {
      const at = issue.path.map((p) => (typeof p === 'number' ? `[${p}]` : `.${String(p)}`)).join('');
      issues.push({ path: `${source}${at}`, message: `${issue.message} (got ${shown(raw)})` });
    }
  }
  if (issues.length > 0) throw settingsError(what, issues);
  return out as SettingsOf<S>;
}

/** The error thrown for bad settings: one line per issue. */
export function settingsError(what: string, issues: SettingIssue[]): TaskmasterError {
  return new TaskmasterError(
    'EVALIDATION',
    `invalid ${what} settings:\n${issueText(issues, { lines: true })}`,
    {
      issues,
    },
  );
}

function shown(raw: unknown): string {
  if (typeof raw === 'string') return JSON.stringify(raw);
  if (Array.isArray(raw)) return JSON.stringify(raw);
  return String(raw);
}

// ---- value schemas: each takes what a flag or variable gives (text) and returns the typed value ----

/** An integer in [min, max], from text or a number. */
export function integer(min: number, max: number = Number.MAX_SAFE_INTEGER): z.ZodType<number> {
  const range =
    max === Number.MAX_SAFE_INTEGER ? `an integer >= ${min}` : `an integer between ${min} and ${max}`;
  return z.union([z.string(), z.number()]).transform((v, ctx) => {
    const n = typeof v === 'number' ? v : v.trim() === '' ? NaN : Number(v);
    if (!Number.isInteger(n) || n < min || n > max) {
      ctx.addIssue({ code: 'custom', message: `must be ${range}` });
      return z.NEVER;
    }
    return n;
  });
}

export function nonEmpty(): z.ZodType<string> {
  return z.string().trim().min(1, 'must not be empty');
}

/** An http(s) URL such as the master's. */
export function httpUrl(): z.ZodType<string> {
  return z.string().refine((s) => {
    if (!URL.canParse(s)) return false;
    const { protocol } = new URL(s);
    return protocol === 'http:' || protocol === 'https:';
  }, 'must be an http:// or https:// URL such as http://127.0.0.1:3232');
}

export function oneOf<const T extends readonly [string, ...string[]]>(values: T): z.ZodType<T[number]> {
  return z
    .string()
    .refine(
      (s): s is T[number] => values.includes(s),
      `must be one of ${values.join(', ')}`,
    ) as unknown as z.ZodType<T[number]>;
}

/** A JSON object given as text (`--data '{"gpu":true}'`); `value` checks its contents. */
export function jsonObject<T>(value: z.ZodType<T>): z.ZodType<Record<string, T>> {
  return z
    .string()
    .transform((s, ctx) => {
      try {
        return JSON.parse(s) as unknown;
      } catch {
        ctx.addIssue({ code: 'custom', message: 'must be a JSON object, e.g. \'{"key":"value"}\'' });
        return z.NEVER;
      }
    })
    .pipe(z.record(z.string(), value, { error: 'must be a JSON object, e.g. \'{"key":"value"}\'' }));
}

/**
 * A file of PEM certificates (`--ca`: the CA that signed an https master's certificate): its text,
 * checked to hold a certificate, so a wrong path fails at start rather than as a refused handshake.
 */
export function caFile(): z.ZodType<string, string> {
  return z
    .string()
    .trim()
    .min(1, 'must not be empty')
    .transform((file, ctx) => {
      let text: string;
      try {
        text = fs.readFileSync(file, 'utf8');
      } catch (err) {
        ctx.addIssue({ code: 'custom', message: `cannot read ${file} (${(err as Error).message})` });
        return z.NEVER;
      }
      try {
        new crypto.X509Certificate(text);
      } catch {
        ctx.addIssue({ code: 'custom', message: `${file} holds no PEM certificate` });
        return z.NEVER;
      }
      return text;
    });
}

/** `--ca` and its variable, shared by every client of a master. */
export const CA_SETTING = {
  ca: { flag: '--ca', env: 'TASKMASTER_CA', schema: caFile() },
} satisfies Record<string, Setting<unknown>>;

export const LOG_LEVELS = ['error', 'warn', 'info', 'http', 'verbose', 'debug', 'silly'] as const;

export interface LogSettings {
  /** Absent: pretty on a terminal, JSON otherwise. */
  format?: LogFormat;
  /** Absent: info. */
  level?: string;
}

/** `--log-format` / `--log-level` and their variables, shared by every role. */
export const LOG_SETTINGS = {
  logFormat: {
    flag: '--log-format',
    env: 'TASKMASTER_LOG_FORMAT',
    schema: oneOf(['pretty', 'json'] as const),
  },
  logLevel: { flag: '--log-level', env: 'TASKMASTER_LOG_LEVEL', schema: oneOf(LOG_LEVELS) },
} satisfies Record<string, Setting<unknown>>;

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
  /** The flag as typed, e.g. `--port`; commander gives its value under the camel-cased name (`port`). */
  flag: string;
  /** The environment variable, if there is one. */
  env?: string;
  /** Turns the variable's text into what the flag would give (e.g. a path list into an array). */
  fromEnv?: (text: string) => unknown;
  schema: z.ZodType<T>;
  /** The value's placeholder in `--help` and the docs (`<n>`); absent: a switch, on when given. */
  arg?: string;
  /** The flag may be given more than once; its values are collected into an array. */
  repeatable?: boolean;
  /** One line for `--help` and the docs' table, in Markdown (`--help` shows it without the marks). */
  doc?: string;
  /** The default as `--help` and the docs say it. */
  defaultText?: string;
  /** The docs' section the flag is listed in (`network`, `scheduling` …). */
  group?: string;
}

export type SettingsOf<S extends Record<string, Setting<unknown>>> = {
  [K in keyof S]?: S[K] extends Setting<infer T> ? T : never;
};

/** `path` is where the value came from: the flag or the variable. */
export type SettingIssue = Issue;

/** `--port <n>`, `--insecure`: the flag as `--help` and the docs show it. */
export function flagUsage(s: Setting<unknown>): string {
  return s.arg ? `${s.flag} ${s.arg}` : s.flag;
}

/** The name commander gives a flag's value under: `--max-attempts` is `maxAttempts`. */
export function flagKey(flag: string): string {
  return flag.replace(/^--/, '').replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
}

/**
 * Reads every setting in `specs` from `flags` (as commander gives them, by `flagKey`) and `env`,
 * into an object keyed like `specs`; throws one error listing every bad value.
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
    const given = flags[flagKey(spec.flag)];
    if (given !== undefined) {
      raw = given;
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

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** `7d`, `12h`, `30m`, `90s` or a number of milliseconds, in milliseconds. */
function toMs(v: string): number {
  const m = /^(\d+)(ms|s|m|h|d)?$/.exec(v) as RegExpExecArray;
  return Number(m[1]) * UNITS[m[2] ?? 'ms'];
}

/** A duration: `12h`, `30m`, `90s`, `500ms` or a number of milliseconds; in milliseconds. */
export function duration(): z.ZodType<number> {
  return z
    .string()
    .regex(/^\d+(ms|s|m|h|d)?$/, 'must be a duration such as 2h, 30m, 90s or 500ms')
    .transform(toMs);
}

/** A retention period: a duration, or `forever` (null: keep). */
export function retention(): z.ZodType<number | null> {
  return z
    .string()
    .regex(/^(forever|\d+(ms|s|m|h|d)?)$/, 'must be a duration such as 7d, 12h, 30m, 90s, or forever')
    .transform((v) => (v === 'forever' ? null : toMs(v)));
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
    arg: '<format>',
    env: 'TASKMASTER_LOG_FORMAT',
    schema: oneOf(['pretty', 'json'] as const),
    group: 'logging',
    defaultText: 'pretty on a terminal, else json',
    doc: '`pretty` or `json`',
  },
  logLevel: {
    flag: '--log-level',
    arg: '<level>',
    env: 'TASKMASTER_LOG_LEVEL',
    schema: oneOf(LOG_LEVELS),
    group: 'logging',
    defaultText: 'info',
    doc: 'error, warn, info, verbose or debug',
  },
} satisfies Record<string, Setting<unknown>>;

// ---- option declarations: a role's option, declared once, gives its flag, help, default and docs ----

/**
 * One option of a role (the master's `MasterOptions` field of the same name): its value's schema, its
 * default, and, when the command line sets it, its flag and variable. `--help`, the docs' table, the
 * options type, its defaults and what `/api/config` shows all come from this one declaration.
 */
export interface OptionDeclaration<T> extends Omit<Setting<T>, 'flag'> {
  /** Absent: set through the API only (`new Master({ … })`), listed in the docs' second table. */
  flag?: string;
  /** Absent: the option is unset unless given (`defaultText` says what that means). */
  default?: T;
  /** The docs' section it is listed in; required here, since every option is documented. */
  group: string;
  doc: string;
  /** What `/api/config` shows instead of a value that was set (a token, key material, a password). */
  redact?(value: T): unknown;
}

/** A declaration as `option()` returns it: typed by its schema. */
export type Declared<S extends z.ZodType> = Omit<OptionDeclaration<z.output<S>>, 'schema'> & { schema: S };

/**
 * Declares an option: `schema` gives its type, which its default and `redact` are checked against.
 * With a default, the option is among `DefaultsOf` (never undefined once the defaults apply).
 */
export function option<S extends z.ZodType>(
  schema: S,
  declaration: Omit<OptionDeclaration<z.output<S>>, 'schema'> & { default: z.output<S> },
): Declared<S> & { default: z.output<S> };
export function option<S extends z.ZodType>(
  schema: S,
  declaration: Omit<OptionDeclaration<z.output<S>>, 'schema' | 'default'>,
): Declared<S>;
export function option<S extends z.ZodType>(
  schema: S,
  declaration: Omit<OptionDeclaration<z.output<S>>, 'schema'>,
): Declared<S> {
  return { ...declaration, schema };
}

export type Declarations = Record<string, OptionDeclaration<unknown> & { schema: z.ZodType }>;

/** The options a list declares, each optional and typed by its schema. */
export type ValuesOf<D extends Declarations> = { [K in keyof D]?: z.output<D[K]['schema']> };

/** The options a list declares a default for, each with its type. */
export type DefaultsOf<D extends Declarations> = {
  [K in keyof D as D[K] extends { default: infer V } ? (undefined extends V ? never : K) : never]: z.output<
    D[K]['schema']
  >;
};

/** The defaults a list declares, as one frozen object (`{ ...defaultsOf(list), ...opts }`). */
export function defaultsOf<D extends Declarations>(declarations: D): Readonly<DefaultsOf<D>> {
  const out: Record<string, unknown> = {};
  for (const [key, d] of Object.entries(declarations)) if (d.default !== undefined) out[key] = d.default;
  return Object.freeze(out) as DefaultsOf<D>;
}

/** The value shown when a secret is set: that it is, not what it is. */
export const REDACTED = '[redacted]';

/**
 * The options as an operator may see them: every declared one (null when unset), secrets replaced
 * by what their declaration's `redact` shows, functions by `"(function)"`.
 */
export function shownOptions(
  declarations: Declarations,
  values: Record<string, unknown>,
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, d] of Object.entries(declarations)) {
    const v = values[key];
    if (v === undefined || v === null) out[key] = null;
    else if (d.redact) out[key] = (d.redact as (value: unknown) => unknown)(v);
    else out[key] = typeof v === 'function' ? '(function)' : v;
  }
  return out;
}

/**
 * The declarations the command line sets, as settings for `readSettings` (keyed by option, read by
 * flag), with the default said in words where the declaration gives none.
 */
export function flagSettings(declarations: Declarations): Record<string, Setting<unknown>> {
  const out: Record<string, Setting<unknown>> = {};
  for (const [key, d] of Object.entries(declarations)) {
    if (d.flag === undefined) continue;
    const { default: value, redact: _redact, ...rest } = d;
    out[key] = { ...rest, flag: d.flag, defaultText: d.defaultText ?? defaultWords(value, d.arg) };
  }
  return out;
}

/** A default in words, for a declaration that gives no `defaultText`: `3`, `20,000`, `off`, `none`. */
export function defaultWords(value: unknown, arg?: string): string {
  if (value === undefined || value === null) return 'none';
  if (typeof value === 'boolean' || arg === undefined) return value ? 'on' : 'off';
  if (typeof value === 'number') return value >= 10_000 ? value.toLocaleString('en-US') : String(value);
  if (Array.isArray(value) && value.length === 0) return 'none';
  return typeof value === 'string' ? value : JSON.stringify(value);
}

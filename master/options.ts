/**
 * The master's options, each declared once beside the room that reads it (store/options.ts,
 * server-options.ts, scheduler/options.ts) and gathered here: `MasterOptions`, its defaults, the
 * `taskmaster master` flags and `--help` (master/config.ts), `/api/config` and the table in
 * docs/configuration.md (`npm run docs:options`) all come from `MASTER_OPTIONS`. Adding an option is
 * one declaration in the list of the room that uses it.
 */
import type { Logger } from '../common/logger';
import { defaultsOf, shownOptions, type DefaultsOf, type ValuesOf } from '../common/settings';
import { SCHEDULER_OPTIONS } from './scheduler/options';
import { SERVER_OPTIONS } from './server-options';
import { STORE_OPTIONS } from './store/options';

/** Every option of the master, in the order `--help` and the docs list them within a group. */
export const MASTER_OPTIONS = { ...STORE_OPTIONS, ...SERVER_OPTIONS, ...SCHEDULER_OPTIONS };

/** The docs' sections, in order: every declaration's `group` is one of these. */
export const MASTER_GROUPS: Readonly<Record<string, string>> = Object.freeze({
  database: 'Database',
  network: 'Network and security',
  limits: 'Limits',
  scheduling: 'Scheduling',
  recovery: 'Recovery',
  retention: 'Retention',
  discovery: 'Discovery',
  logging: 'Logs',
});

/**
 * What `new Master()` takes: every declared option (see each declaration for what it does and its
 * default), `mongoUrl` required, and the logger it writes to.
 */
export type MasterOptions = ValuesOf<typeof MASTER_OPTIONS> & { mongoUrl: string; logger?: Logger };

export type MasterDefaults = DefaultsOf<typeof MASTER_OPTIONS>;

export const MASTER_DEFAULTS: Readonly<MasterDefaults> = defaultsOf(MASTER_OPTIONS);

type Effective = MasterOptions & MasterDefaults;

/** The scheduler's part of the master's options: the ones scheduler/options.ts declares. */
export function schedulerOptions(opts: Effective): { [K in keyof typeof SCHEDULER_OPTIONS]: Effective[K] } {
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(SCHEDULER_OPTIONS)) out[key] = opts[key as keyof Effective];
  return out as { [K in keyof typeof SCHEDULER_OPTIONS]: Effective[K] };
}

/** The options as `/api/config` shows them: every declared one, secrets redacted. */
export function shownConfig(opts: Effective): Record<string, unknown> {
  return shownOptions(MASTER_OPTIONS, opts);
}

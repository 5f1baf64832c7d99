/**
 * The operator commands' client of a master's HTTP API: the master's URL and token from flags or
 * the environment, one request with a timeout, and errors that say what went wrong.
 *
 * Several masters (`--master http://a:3232,http://b:3232`): each is asked for its `/health` in
 * order, and the first that says it is the active one answers the commands; when none says so (an
 * election, or masters without leases), the first that answered at all.
 */
import type { Command } from 'commander';
import { z } from 'zod';
import { connectCause } from '../common/connect-cause';
import { requestJson } from '../common/http-request';
import { mastersText, parseMasterUrls } from '../common/master-urls';
import { CA_SETTING, readSettings } from '../common/settings';

export const DEFAULT_MASTER = 'http://127.0.0.1:3232';

export interface ApiFlags {
  master?: string;
  token?: string;
  ca?: string;
}

/** `--master`, `--token` and `--ca`, as every operator command takes them. */
export function withMasterFlags(c: Command): Command {
  return c
    .option(
      '--master <urls>',
      `master URL, or several separated by commas: the active one is used (env TASKMASTER_MASTER; default ${DEFAULT_MASTER})`,
    )
    .option(
      '--token <secret>',
      'token for the master (env TASKMASTER_TOKEN; commands that only read also take TASKMASTER_READ_TOKEN)',
    )
    .option('--ca <file>', 'PEM certificate of the CA that signed an https master (env TASKMASTER_CA)');
}

/** A request to the master's API; its JSON answer, or an Error with the status, code and message. */
export async function api<T = unknown>(
  flags: ApiFlags,
  path: string,
  method = 'GET',
  payload?: unknown,
): Promise<T> {
  // Commands that only read work with the read-only token (a dashboard's).
  const token =
    flags.token ??
    (process.env.TASKMASTER_TOKEN ||
      (method === 'GET' ? process.env.TASKMASTER_READ_TOKEN : undefined) ||
      undefined);
  const { ca } = readSettings('master connection', CA_SETTING, { ca: flags.ca }, process.env);
  const base = await activeMaster(flags, ca);
  let res: { status: number; body: { error?: { code: string; message: string } } };
  try {
    res = await requestJson(new URL(path, base), {
      method,
      headers: token ? { authorization: `Bearer ${token}` } : {},
      body: payload,
      ca,
    });
  } catch (err) {
    throw new Error(`cannot reach the master at ${base}: ${connectCause(err)}`);
  }
  const body = res.body;
  if (res.status === 401) throw new Error(`${base}: ${connectCause({ data: { code: 'EAUTH' } })}`);
  if (res.status < 200 || res.status >= 300)
    throw new Error(`${res.status} ${body.error?.code ?? ''} ${body.error?.message ?? ''}`.trim());
  return body as T;
}

/** What a master's `/health` says of its role (a master without leases says nothing of it). */
const healthSchema = z.object({ role: z.enum(['active', 'standby']).optional() });

/** The master chosen per list, so a command's later requests skip the look-up. */
const chosen = new Map<string, Promise<string>>();

/** The master the commands talk to: the only one given, or the active one of several (see the top). */
function activeMaster(flags: ApiFlags, ca?: string | string[]): Promise<string> {
  const fromFlag = flags.master !== undefined;
  const given = flags.master ?? (process.env.TASKMASTER_MASTER || DEFAULT_MASTER);
  const masters = parseMasterUrls(given, fromFlag ? '--master' : 'TASKMASTER_MASTER');
  if (masters.length === 1) return Promise.resolve(masters[0]);
  const key = masters.join(',');
  let found = chosen.get(key);
  if (!found) {
    found = pickActive(masters, ca);
    chosen.set(key, found);
    // A failed look-up is not remembered: the next request asks again.
    found.catch(() => chosen.delete(key));
  }
  return found;
}

async function pickActive(masters: string[], ca?: string | string[]): Promise<string> {
  const failures: string[] = [];
  let answered: string | undefined;
  for (const base of masters) {
    try {
      const res = await requestJson(new URL('/health', base), { ca, timeoutMs: 5000 });
      const health = healthSchema.safeParse(res.body);
      if (res.status === 200 && health.success && health.data.role === 'active') return base;
      if (res.status > 0) answered ??= base;
      failures.push(
        `${base}: ${health.success && health.data.role ? health.data.role : `HTTP ${res.status}`}`,
      );
    } catch (err) {
      failures.push(`${base}: ${connectCause(err)}`);
    }
  }
  if (answered) return answered;
  throw new Error(`cannot reach ${mastersText(masters)}: ${failures.join('; ')}`);
}

/** Path segment for an id. */
export const seg = encodeURIComponent;

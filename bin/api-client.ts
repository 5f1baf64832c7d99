/**
 * The operator commands' client of a master's HTTP API: the master's URL and token from flags or
 * the environment, one request with a timeout, and errors that say what went wrong.
 */
import type { Command } from 'commander';
import { connectCause } from '../common/connect-cause';
import { requestJson } from '../common/http-request';
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
    .option('--master <url>', `master URL (env TASKMASTER_MASTER; default ${DEFAULT_MASTER})`)
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
  const base = flags.master ?? process.env.TASKMASTER_MASTER ?? DEFAULT_MASTER;
  // Commands that only read work with the read-only token (a dashboard's).
  const token =
    flags.token ??
    (process.env.TASKMASTER_TOKEN ||
      (method === 'GET' ? process.env.TASKMASTER_READ_TOKEN : undefined) ||
      undefined);
  const { ca } = readSettings('master connection', CA_SETTING, { ca: flags.ca }, process.env);
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

/** Path segment for an id. */
export const seg = encodeURIComponent;

/**
 * Several master URLs for one client (a runner, a feeder, the CLI): an active master and its
 * standbys. Given as a list, or as one string of comma-separated URLs (`--master
 * http://a:3232,http://b:3232`, TASKMASTER_MASTER), each checked on its own so a typo names itself.
 *
 * The order a client tries them in is `nextMaster`'s: a pure function of where it is, so the rotation
 * can be read (and tested) apart from the sockets that follow it.
 */
import { z } from 'zod';
import { TaskmasterError } from '../protocol/errors';
import { formatIssues, issueText } from '../protocol/issues';

const EXAMPLE = 'http://127.0.0.1:3232';

const NOT_A_URL = `must be an http:// or https:// URL such as ${EXAMPLE}`;

function isHttpUrl(s: string): boolean {
  return URL.canParse(s) && ['http:', 'https:'].includes(new URL(s).protocol);
}

/** One master's base URL: http or https. */
export const masterUrl = z.string().refine(isHttpUrl, NOT_A_URL);

/**
 * The masters' URLs: a list, or comma-separated text. Blanks around commas are ignored, an empty
 * entry is refused (a stray comma is more likely a mistake than a wish), and repeats are kept once.
 * Of several, a bad one is named with its place (`[1]: "htp://b" is not …`).
 */
export const masterUrls = z.union([z.string(), z.array(z.string())]).transform((v, ctx) => {
  const urls = (typeof v === 'string' ? v.split(',') : v).map((s) => s.trim());
  if (urls.length === 0) {
    ctx.addIssue({ code: 'custom', message: `must name at least one master, e.g. ${EXAMPLE}` });
    return z.NEVER;
  }
  urls.forEach((url, i) => {
    if (urls.length === 1) {
      if (!isHttpUrl(url)) ctx.addIssue({ code: 'custom', message: NOT_A_URL });
    } else if (url === '')
      ctx.addIssue({ code: 'custom', path: [i], message: 'is empty: separate masters with single commas' });
    else if (!isHttpUrl(url))
      ctx.addIssue({
        code: 'custom',
        path: [i],
        message: `${JSON.stringify(url)} is not an http:// or https:// URL such as ${EXAMPLE}`,
      });
  });
  return urls.filter((url, i) => urls.findIndex((u) => sameMaster(u, url)) === i);
});

/** The URLs of `value` (see `masterUrls`); a bad one throws EVALIDATION naming it and its place. */
export function parseMasterUrls(value: string | readonly string[], what = 'master'): string[] {
  const parsed = masterUrls.safeParse(typeof value === 'string' ? value : [...value]);
  if (parsed.success) return parsed.data;
  const issues = formatIssues(parsed.error.issues, what);
  throw new TaskmasterError('EVALIDATION', issueText(issues), { issues });
}

/** How a URL is compared: `http://a:3232` and `http://a:3232/` are the same master. */
export function sameMaster(a: string, b: string): boolean {
  return URL.canParse(a) && URL.canParse(b) ? new URL(a).href === new URL(b).href : a === b;
}

/** The masters' URLs as a message says them: `the master at X`, or `the masters at X, Y`. */
export function mastersText(urls: readonly string[]): string {
  return urls.length === 1 ? `the master at ${urls[0]}` : `the masters at ${urls.join(', ')}`;
}

/** Where a client is in its list: the URL it tries now and the last listed URL it was at. */
export interface MasterPosition {
  /** The URL tried or connected now: a listed one, or an active master a standby named. */
  current: string;
  /** Index in the list of the listed URL last tried (the one that named `current` if it is not listed). */
  listed: number;
}

/**
 * The URL to try after `at` failed (unreachable, refused, or a standby that names no active master):
 * the next one in the list, round and round. After a URL a standby named that is not in the list,
 * the one after that standby: a standby may advertise an address this client cannot reach, and
 * going back to it would only send the client there again, never to the rest of its list.
 */
export function nextMaster(list: readonly string[], at: MasterPosition): MasterPosition {
  const here = list.findIndex((u) => sameMaster(u, at.current));
  const next = ((here < 0 ? at.listed : here) + 1) % list.length;
  return { current: list[next], listed: next };
}

/** Following a standby to the active master it names: listed or not, the list position is kept. */
export function followActive(list: readonly string[], at: MasterPosition, active: string): MasterPosition {
  const listed = list.findIndex((u) => sameMaster(u, active));
  return listed >= 0 ? { current: list[listed], listed } : { current: active, listed: at.listed };
}

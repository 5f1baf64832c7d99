/**
 * One JSON request to a master's HTTP API, over http or https, for the operator commands and the
 * tracker look-up. Node's https rather than fetch, because fetch cannot be given a CA to trust (a
 * master whose certificate a private CA signed) without another HTTP client.
 */
import http from 'node:http';
import https from 'node:https';

export interface JsonRequest {
  method?: string;
  headers?: Record<string, string>;
  /** Sent as JSON. */
  body?: unknown;
  /** CA certificates (PEM) to verify an https master with, instead of the system's. */
  ca?: string | string[];
  /** Give up after this long. Default 10 000 ms. */
  timeoutMs?: number;
}

/** The status and the parsed JSON answer (`{}` when the answer is not JSON). */
export function requestJson(
  url: URL,
  req: JsonRequest = {},
): Promise<{ status: number; body: Record<string, unknown> }> {
  const payload = req.body === undefined ? undefined : JSON.stringify(req.body);
  const headers: Record<string, string> = { accept: 'application/json', ...req.headers };
  if (payload !== undefined) headers['content-type'] = 'application/json';
  const timeoutMs = req.timeoutMs ?? 10_000;
  return new Promise((resolve, reject) => {
    const options = { method: req.method ?? 'GET', headers, ...(req.ca ? { ca: req.ca } : {}) };
    const r = (url.protocol === 'https:' ? https : http).request(url, options, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        let body: Record<string, unknown> = {};
        try {
          const parsed = JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
          if (parsed && typeof parsed === 'object') body = parsed as Record<string, unknown>;
        } catch {
          // not JSON: the status says what happened
        }
        resolve({ status: res.statusCode ?? 0, body });
      });
    });
    r.setTimeout(timeoutMs, () =>
      r.destroy(Object.assign(new Error(`timeout: no answer within ${timeoutMs} ms`), { code: 'ETIMEDOUT' })),
    );
    r.on('error', reject);
    r.end(payload);
  });
}

/**
 * Why a connection to the master failed, in words an operator can act on: refused (nothing listens
 * there), not found (no such host, or no Socket.IO server at that URL), timeout, bad token, or a TLS
 * certificate the client cannot verify. Socket.IO's connect_error carries the transport's own error
 * in `description` (for a WebSocket, an event whose `error` has the code); Node's https in `code`.
 */

/** Node's codes for a certificate that does not verify, by what the operator can do about it. */
const UNTRUSTED = new Set([
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_UNTRUSTED',
  'CERT_SIGNATURE_FAILURE',
  'CERT_REJECTED',
]);
const OUT_OF_DATE = new Set(['CERT_HAS_EXPIRED', 'CERT_NOT_YET_VALID']);

/**
 * The TLS problem behind a failed connection, said so an operator can fix it, or undefined when the
 * failure is something else.
 */
export function tlsProblem(err: unknown): string | undefined {
  const e = err as {
    code?: string;
    message?: string;
    cause?: { code?: string; message?: string };
    description?: { error?: { code?: string; message?: string }; message?: string };
  };
  const inner = (typeof e?.description === 'object' && e.description?.error) || e?.cause || e;
  const code = inner?.code ?? '';
  const what = `${code}: ${inner?.message ?? ''}`;
  if (UNTRUSTED.has(code))
    return `the master's TLS certificate is not trusted (${what}): give the CA that signed it (--ca FILE, TASKMASTER_CA, or the ca option)`;
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID')
    return `the master's TLS certificate is for another host (${what}): connect by a name or address it lists`;
  if (OUT_OF_DATE.has(code)) return `the master's TLS certificate is out of date (${what})`;
  if (code === 'EPROTO' || code === 'ERR_SSL_WRONG_VERSION_NUMBER')
    return `no TLS at that address (${what}): is the master's URL http:// rather than https://?`;
  return undefined;
}

/** Why the connection failed, as the top of this file says. */
export function connectCause(err: unknown): string {
  const tls = tlsProblem(err);
  if (tls) return tls;
  const e = err as {
    message?: string;
    data?: { code?: string; active?: unknown };
    description?: { message?: string } | string | number;
    cause?: { code?: string; message?: string };
  };
  if (e?.data?.code === 'EAUTH' || /EAUTH/.test(e?.message ?? ''))
    return 'bad token (EAUTH): the master refused it';
  if (e?.data?.code === 'ESTANDBY')
    return typeof e.data.active === 'string'
      ? `a standby (ESTANDBY): the active master is at ${e.data.active}`
      : 'a standby (ESTANDBY): no active master is known yet';
  const inner =
    typeof e?.description === 'object' && e.description
      ? (e.description.message ?? '')
      : String(e?.description ?? '');
  const text = `${e?.cause?.code ?? ''} ${e?.cause?.message ?? ''} ${inner} ${e?.message ?? ''}`;
  if (/ECONNREFUSED/.test(text)) return 'refused (ECONNREFUSED): nothing listens at that address';
  if (/ENOTFOUND|EAI_AGAIN/.test(text)) return 'not found (ENOTFOUND): no such host';
  if (/\b404\b/.test(text)) return 'not found (HTTP 404): no Taskmaster master at that URL';
  if (/timeout|ETIMEDOUT|TimeoutError|aborted due to timeout/i.test(text))
    return 'timeout: no answer in time';
  if (/ECONNRESET|EHOSTUNREACH|ENETUNREACH/.test(text)) return text.match(/E[A-Z]+/)?.[0] ?? text.trim();
  return (inner || e?.message || String(err)).trim();
}

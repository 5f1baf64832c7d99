/**
 * Why a connection to the master failed, in words an operator can act on: refused (nothing listens
 * there), not found (no such host, or no Socket.IO server at that URL), timeout, or bad token.
 * Socket.IO's connect_error carries the transport's own error in `description`; fetch's in `cause`.
 */
export function connectCause(err: unknown): string {
  const e = err as {
    message?: string;
    data?: { code?: string };
    description?: { message?: string } | string | number;
    cause?: { code?: string; message?: string };
  };
  if (e?.data?.code === 'EAUTH' || /EAUTH/.test(e?.message ?? ''))
    return 'bad token (EAUTH): the master refused it';
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

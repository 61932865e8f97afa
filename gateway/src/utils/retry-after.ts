/** Longer than any upstream means seriously (a year): a bigger value is noise, not advice. */
const MAX_RETRY_AFTER_SECONDS = 365 * 24 * 3600;

/**
 * A `retry-after` header in milliseconds from `nowMs`: either delay-seconds (`"7"`; decimals are accepted
 * because some servers send them) or an HTTP date (`"Wed, 21 Oct 2015 07:28:00 GMT"`), a date in the past
 * meaning 0. Undefined when the header is absent or unreadable, so the caller falls back to its own backoff.
 */
export function parseRetryAfter(value: string | string[] | undefined, nowMs: number): number | undefined {
  const text = (Array.isArray(value) ? value[0] : value)?.trim();
  if (text === undefined || text === "") return undefined;
  if (/^\d+(\.\d+)?$/.test(text)) {
    const seconds = Number(text);
    return seconds <= MAX_RETRY_AFTER_SECONDS ? Math.round(seconds * 1000) : undefined;
  }
  // Date.parse also reads forms like "2015-10-21"; only accept what looks like an HTTP date (has a weekday
  // or month name), so a malformed number is never mistaken for one.
  if (!/[A-Za-z]{3}/.test(text)) return undefined;
  const at = Date.parse(text);
  if (Number.isNaN(at)) return undefined;
  const delay = Math.max(0, at - nowMs);
  return delay <= MAX_RETRY_AFTER_SECONDS * 1000 ? delay : undefined;
}

/** Milliseconds as whole seconds for a `retry-after` header: rounded up, so a client never comes back early. */
export function retryAfterHeader(ms: number): string {
  return String(Math.ceil(ms / 1000));
}

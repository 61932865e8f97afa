/** What a secret is replaced with wherever upstream text is quoted. */
export const REDACTED = "[redacted]";

/**
 * The shortest beginning of a secret that is still treated as the secret when a cut leaves it at the end of a
 * quote. Three characters or fewer are mostly a key's public type prefix ("sk-") and carry next to no
 * secret, while redacting them would also eat ordinary word endings ("s", "sk") of every cut message.
 */
export const MIN_REDACTED_PREFIX = 4;

/**
 * `text` with every occurrence of `secret` replaced, then cut to `maxChars` (an ellipsis marks a cut).
 * Redacting first and cutting after is the point: a secret that straddled the cut would otherwise survive
 * whole but for its tail, and whoever controls text before it (a quoted request field) controls the cut.
 * What a cut leaves of a secret is only its beginning at the very end, which is redacted too.
 */
export function quoteRedacted(text: string, secret: string | undefined, maxChars: number): string {
  const hasSecret = secret !== undefined && secret !== "";
  const whole = hasSecret ? text.replaceAll(secret, REDACTED) : text;
  if (whole.length <= maxChars) return whole;
  const cut = whole.slice(0, maxChars);
  return `${hasSecret ? withoutTrailingPrefix(cut, secret) : cut}…`;
}

/** `text` with the longest beginning of `secret` (at least MIN_REDACTED_PREFIX long) that ends it redacted. */
function withoutTrailingPrefix(text: string, secret: string): string {
  for (let length = Math.min(secret.length - 1, text.length); length >= MIN_REDACTED_PREFIX; length--) {
    if (text.endsWith(secret.slice(0, length))) return `${text.slice(0, text.length - length)}${REDACTED}`;
  }
  return text;
}

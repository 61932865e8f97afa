/**
 * A value as text that is the same for equal values, whatever their key order: for telling whether a
 * reloaded backend's settings changed. Maps, Sets, URLs and Buffers are written by content; functions
 * by name only (a setting is never one).
 */
export function stableText(value: unknown): string {
  if (value === undefined) return "u";
  if (typeof value === "function") return `f:${value.name}`;
  if (typeof value === "bigint") return `n:${value.toString()}`;
  if (typeof value === "symbol") return `s:${value.description ?? ""}`;
  if (value === null || typeof value !== "object") return JSON.stringify(value);
  if (value instanceof URL) return `url:${JSON.stringify(value.href)}`;
  if (Buffer.isBuffer(value)) return `buf:${value.toString("base64")}`;
  if (value instanceof Map)
    return `map{${[...value.entries()]
      .map(([key, item]) => `${stableText(key)}=${stableText(item)}`)
      .sort()
      .join(",")}}`;
  if (value instanceof Set) return `set[${[...value].map(stableText).sort().join(",")}]`;
  if (Array.isArray(value)) return `[${value.map(stableText).join(",")}]`;
  const fields = value as Record<string, unknown>;
  return `{${Object.keys(fields)
    .sort()
    .map((key) => `${JSON.stringify(key)}:${stableText(fields[key])}`)
    .join(",")}}`;
}

/** The deepest nesting of arrays and objects accepted in JSON the gateway reads (request bodies, upstream answers). */
export const MAX_JSON_DEPTH = 128;

/** Whether `value` nests arrays/objects deeper than `maxDepth`; stops at the limit, so it cannot overflow the stack. */
export function exceedsDepth(value: unknown, maxDepth: number): boolean {
  if (typeof value !== "object" || value === null) return false;
  if (maxDepth <= 0) return true;
  for (const child of Array.isArray(value) ? value : Object.values(value)) {
    if (exceedsDepth(child, maxDepth - 1)) return true;
  }
  return false;
}

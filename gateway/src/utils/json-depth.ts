/**
 * How deeply parsed JSON may nest, on the way in (request bodies) and from upstreams. No real chat
 * completion comes near it (tool-call schemas nest a few dozen levels at most), while JSON.stringify and
 * any recursive walk over a value overflow the stack somewhere past ten thousand levels.
 */
export const MAX_JSON_DEPTH = 128;

/**
 * Whether `value` nests objects and arrays more than `maxDepth` levels deep: a primitive is depth 0,
 * `{}` and `[]` are depth 1, `[[1]]` is depth 2. It walks with its own stack, never recursion, so no depth
 * can overflow it, and it stops at the first container past the limit (a cycle, which JSON cannot
 * produce, is therefore reported as too deep rather than walked forever).
 */
export function exceedsDepth(value: unknown, maxDepth: number): boolean {
  const pending: unknown[] = [value];
  const depths: number[] = [0];
  for (;;) {
    const item = pending.pop();
    const depth = depths.pop();
    if (depth === undefined) return false;
    if (typeof item !== "object" || item === null) continue;
    if (depth + 1 > maxDepth) return true;
    const children = Array.isArray(item) ? (item as readonly unknown[]) : Object.values(item);
    for (const child of children) {
      // Only containers go on the stack: a wide array of numbers costs no stack entries.
      if (typeof child === "object" && child !== null) {
        pending.push(child);
        depths.push(depth + 1);
      }
    }
  }
}

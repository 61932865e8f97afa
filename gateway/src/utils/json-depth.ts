/**
 * How deeply parsed JSON may nest, on the way in (request bodies) and from upstreams. No real chat
 * completion comes near it (tool-call schemas nest a few dozen levels at most), while JSON.stringify and
 * any recursive walk over a value overflow the stack somewhere past ten thousand levels.
 */
export const MAX_JSON_DEPTH = 128;

/**
 * Whether the JSON text `text` (already known to parse) nests objects and arrays more than `maxDepth`
 * levels deep: a primitive is depth 0, `{}` and `[]` are depth 1, `[[1]]` is depth 2. It reads the text,
 * not the parsed value: one pass over its characters with a counter, no stack and no allocation (walking
 * the parsed value took an array per object, on every request body and every stream event), and it stops
 * at the first bracket past the limit.
 */
export function jsonTextExceedsDepth(text: string, maxDepth: number): boolean {
  // Nesting past maxDepth takes maxDepth + 1 opening brackets, each closed in JSON that parses: a shorter
  // text cannot (most stream events are, so they are not read again).
  if (text.length < 2 * (maxDepth + 1)) return false;
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (inString) {
      if (code === BACKSLASH) i++;
      else if (code === QUOTE) inString = false;
    } else if (code === QUOTE) inString = true;
    else if (code === OPEN_BRACE || code === OPEN_BRACKET) {
      if (++depth > maxDepth) return true;
    } else if (code === CLOSE_BRACE || code === CLOSE_BRACKET) depth--;
  }
  return false;
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;

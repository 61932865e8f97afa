/**
 * A write to a pipe of at most PIPE_BUF (4096 bytes on Linux) is atomic. Under WORKERS > 1 every worker
 * writes to the same stdout pipe, so no write may exceed it, or lines from two workers can interleave.
 */
export const PIPE_BUF = 4096;

/** What one JSON line may take, its newline excluded. */
const MAX_JSON_BYTES = PIPE_BUF - 1;

/** Appended to a string that was cut, so a reader knows it is not the whole value. */
const CUT_MARK = "…";
const CUT_MARK_BYTES = 3;
/** The least a cut string takes: its quotes and the mark. */
const MIN_LEAF_BYTES = 2 + CUT_MARK_BYTES;

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** A string value inside a parsed line, with where it sits so it can be replaced. */
interface Leaf {
  readonly holder: Json[] | { [key: string]: Json };
  readonly key: string | number;
  readonly value: string;
  readonly bytes: number;
}

/**
 * The JSON line `json` (no newline) if it fits in a pipe write with its newline; otherwise the same object
 * with its longest strings cut (marked with "…") until it does. Only over-long lines pay for this: callers
 * check the length first.
 */
export function fitLine(json: string): string {
  const parsed = JSON.parse(json) as Json;
  // Taken before shorten cuts strings in place, for when cutting cannot make the line fit.
  const kept: { [key: string]: Json } = { truncated: true };
  if (parsed !== null && typeof parsed === "object" && !Array.isArray(parsed)) {
    for (const key of ["level", "message", "requestId", "service", "timestamp"]) {
      const value = parsed[key];
      if (typeof value === "string") kept[key] = value;
    }
  }
  // Too many fields to fit even with every string cut: keep what identifies the event, and say so. A
  // handful of strings, each cut down to the mark if need be, always fits.
  return shorten(parsed) ?? shorten(kept) ?? '{"truncated":true}';
}

/**
 * `value` serialised within MAX_JSON_BYTES, or undefined if cutting strings cannot do it. The longest
 * strings are cut down to one common length, just short enough: each keeps as much as the others, and the
 * shorter ones (often what identifies the event) are untouched.
 */
function shorten(value: Json): string | undefined {
  const text = JSON.stringify(value);
  const bytes = Buffer.byteLength(text);
  if (bytes <= MAX_JSON_BYTES) return text;
  const excess = bytes - MAX_JSON_BYTES;
  const leaves = stringLeaves(value).sort((a, b) => b.bytes - a.bytes);
  // A string's share of the line is exactly its own serialisation: cutting the k longest to `level` bytes
  // saves their sum less k * level. Find the fewest k for which that level is no shorter than the next.
  let sum = 0;
  let cutCount = leaves.length;
  let level = MIN_LEAF_BYTES;
  for (let k = 1; k <= leaves.length; k++) {
    sum += leaves[k - 1]?.bytes ?? 0;
    const candidate = Math.floor((sum - excess) / k);
    if (candidate >= (leaves[k]?.bytes ?? 0) && candidate >= MIN_LEAF_BYTES) {
      cutCount = k;
      level = candidate;
      break;
    }
  }
  for (const leaf of leaves.slice(0, cutCount)) setLeaf(leaf, cutTo(leaf.value, level));
  const cut = JSON.stringify(value);
  return Buffer.byteLength(cut) <= MAX_JSON_BYTES ? cut : undefined;
}

function setLeaf(leaf: Leaf, value: string): void {
  if (Array.isArray(leaf.holder)) leaf.holder[Number(leaf.key)] = value;
  else leaf.holder[String(leaf.key)] = value;
}

function stringLeaves(value: Json): Leaf[] {
  const leaves: Leaf[] = [];
  const visit = (holder: Json[] | { [key: string]: Json }): void => {
    const entries: [string | number, Json][] = Array.isArray(holder)
      ? holder.map((item, index) => [index, item])
      : Object.entries(holder);
    for (const [key, item] of entries) {
      if (typeof item === "string") {
        const bytes = jsonBytes(item);
        // Cutting what is no longer than the mark would not shorten the line.
        if (bytes > MIN_LEAF_BYTES) leaves.push({ holder, key, value: item, bytes });
      } else if (item !== null && typeof item === "object") visit(item);
    }
  };
  if (value !== null && typeof value === "object") visit(value);
  return leaves;
}

/**
 * The longest start of `text`, followed by the mark, whose JSON serialisation (quotes included) takes at most
 * `budget` bytes; just the mark when not even that fits. Pairs of surrogates are never split.
 */
export function cutTo(text: string, budget: number): string {
  let used = MIN_LEAF_BYTES;
  let end = 0;
  while (end < text.length) {
    const code = text.charCodeAt(end);
    const pair = code >= 0xd800 && code <= 0xdbff && isLow(text.charCodeAt(end + 1));
    const size = pair ? 4 : escapedBytes(code);
    if (used + size > budget) break;
    used += size;
    end += pair ? 2 : 1;
  }
  return text.slice(0, end) + CUT_MARK;
}

function isLow(code: number): boolean {
  return code >= 0xdc00 && code <= 0xdfff;
}

/** What JSON.stringify makes of one UTF-16 code unit (not part of a pair), in UTF-8 bytes. */
function escapedBytes(code: number): number {
  if (code === 0x22 || code === 0x5c) return 2;
  if (code < 0x20) return code === 0x08 || code === 0x09 || code === 0x0a || code === 0x0c || code === 0x0d ? 2 : 6;
  if (code < 0x80) return 1;
  if (code < 0x800) return 2;
  // A lone surrogate is written as a \uXXXX escape.
  if (code >= 0xd800 && code <= 0xdfff) return 6;
  return 3;
}

function jsonBytes(text: string): number {
  return Buffer.byteLength(JSON.stringify(text));
}

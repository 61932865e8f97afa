import { jsonTextExceedsDepth, MAX_JSON_DEPTH } from "../../../gateway/src/utils/json-depth";

/** `[[[...]]]` with `depth` arrays. */
function nestedArrays(depth: number): string {
  return `${"[".repeat(depth)}${"]".repeat(depth)}`;
}

/** `{"a":{"a":...}}` with `depth` objects. */
function nestedObjects(depth: number): string {
  return `${'{"a":'.repeat(depth - 1)}{}${"}".repeat(depth - 1)}`;
}

describe("jsonTextExceedsDepth", () => {
  it.each<[string, unknown, number]>([
    ["a number", 1, 0],
    ["a string", "x", 0],
    ["null", null, 0],
    ["an empty object", {}, 1],
    ["an empty array", [], 1],
    ["an array of numbers", [1, 2, 3], 1],
    ["an object holding an array", { a: [1] }, 2],
    ["[[1]]", [[1]], 2],
  ])("%s (%j) has depth %i", (_what, value, depth) => {
    const text = JSON.stringify(value);
    expect(jsonTextExceedsDepth(text, depth)).toBe(false);
    if (depth > 0) expect(jsonTextExceedsDepth(text, depth - 1)).toBe(true);
  });

  it("counts the deepest branch, not the first or the widest", () => {
    const text = JSON.stringify({
      wide: Array.from({ length: 1000 }, () => ({ x: 1 })),
      deep: [{ a: [[{}]] }],
      after: 1,
    });
    // value > deep > [0] > a > [0] > {} : six levels
    expect(jsonTextExceedsDepth(text, 6)).toBe(false);
    expect(jsonTextExceedsDepth(text, 5)).toBe(true);
  });

  it("ignores brackets inside strings, escaped quotes included", () => {
    const text = JSON.stringify({ a: '[[[{{{"]]]', b: ['\\"[[[', "x\\"] });
    expect(JSON.parse(text)).toEqual({ a: '[[[{{{"]]]', b: ['\\"[[[', "x\\"] });
    expect(jsonTextExceedsDepth(text, 2)).toBe(false);
    expect(jsonTextExceedsDepth(text, 1)).toBe(true);
  });

  it.each([
    ["arrays", nestedArrays],
    ["objects", nestedObjects],
  ])("accepts %s exactly MAX_JSON_DEPTH deep and refuses one level more", (_what, nested) => {
    expect(jsonTextExceedsDepth(nested(MAX_JSON_DEPTH), MAX_JSON_DEPTH)).toBe(false);
    expect(jsonTextExceedsDepth(nested(MAX_JSON_DEPTH + 1), MAX_JSON_DEPTH)).toBe(true);
  });

  it("reads a million levels without overflowing anything", () => {
    expect(jsonTextExceedsDepth(nestedArrays(1_000_000), MAX_JSON_DEPTH)).toBe(true);
    expect(jsonTextExceedsDepth(nestedObjects(200_000), Number.POSITIVE_INFINITY)).toBe(false);
  });

  it("stays within any limit for a wide but shallow value", () => {
    const text = JSON.stringify({ items: Array.from({ length: 100_000 }, (_, index) => ({ index })) });
    expect(jsonTextExceedsDepth(text, 3)).toBe(false);
    expect(jsonTextExceedsDepth(text, 2)).toBe(true);
  });
});

import { exceedsDepth, MAX_JSON_DEPTH } from "../../../gateway/src/utils/json-depth";

/** `[[[...]]]` with `depth` arrays, built without recursion. */
function nestedArrays(depth: number): unknown {
  let value: unknown = [];
  for (let level = 1; level < depth; level++) value = [value];
  return value;
}

/** `{"a":{"a":...}}` with `depth` objects. */
function nestedObjects(depth: number): unknown {
  let value: unknown = {};
  for (let level = 1; level < depth; level++) value = { a: value };
  return value;
}

describe("exceedsDepth", () => {
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
    expect(exceedsDepth(value, depth)).toBe(false);
    if (depth > 0) expect(exceedsDepth(value, depth - 1)).toBe(true);
  });

  it("counts the deepest branch, not the first or the widest", () => {
    const value = { wide: Array.from({ length: 1000 }, () => ({ x: 1 })), deep: [{ a: [[{}]] }], after: 1 };
    // value > deep > [0] > a > [0] > {} : six levels
    expect(exceedsDepth(value, 6)).toBe(false);
    expect(exceedsDepth(value, 5)).toBe(true);
  });

  it.each([
    ["arrays", nestedArrays],
    ["objects", nestedObjects],
  ])("accepts %s exactly MAX_JSON_DEPTH deep and refuses one level more", (_what, nested) => {
    expect(exceedsDepth(nested(MAX_JSON_DEPTH), MAX_JSON_DEPTH)).toBe(false);
    expect(exceedsDepth(nested(MAX_JSON_DEPTH + 1), MAX_JSON_DEPTH)).toBe(true);
  });

  it("does not overflow the stack on a million levels, parsed from text", () => {
    const text = `${"[".repeat(1_000_000)}${"]".repeat(1_000_000)}`;
    expect(exceedsDepth(JSON.parse(text), MAX_JSON_DEPTH)).toBe(true);
  });

  it("does not overflow on far more levels than recursion survives, with no limit to stop it early", () => {
    expect(exceedsDepth(nestedObjects(200_000), Number.POSITIVE_INFINITY)).toBe(false);
  });

  it("reports a cycle as too deep instead of walking it forever", () => {
    const cycle: Record<string, unknown> = {};
    cycle.self = cycle;
    expect(exceedsDepth(cycle, MAX_JSON_DEPTH)).toBe(true);
  });

  it("stays within any limit for a wide but shallow value", () => {
    const value = { items: Array.from({ length: 100_000 }, (_, index) => ({ index })) };
    expect(exceedsDepth(value, 3)).toBe(false);
    expect(exceedsDepth(value, 2)).toBe(true);
  });
});

import { stableText } from "../../../gateway/src/utils/stable-text";

describe("stableText", () => {
  it("is the same for equal values whatever their key order", () => {
    expect(stableText({ a: 1, b: { c: [1, 2], d: "x" } })).toBe(stableText({ b: { d: "x", c: [1, 2] }, a: 1 }));
    expect(
      stableText(
        new Map([
          ["a", 1],
          ["b", 2],
        ]),
      ),
    ).toBe(
      stableText(
        new Map([
          ["b", 2],
          ["a", 1],
        ]),
      ),
    );
  });

  it.each<[string, unknown, unknown]>([
    ["a number", { timeout: 10 }, { timeout: 11 }],
    ["an undefined field from an absent one", { model: undefined }, {}],
    ["array order", [1, 2], [2, 1]],
    ["a URL", new URL("http://a:1/v1"), new URL("http://a:2/v1")],
    ["a secret in a Buffer", Buffer.from("key-1"), Buffer.from("key-2")],
    ["a map's value", new Map([["a", 1]]), new Map([["a", 2]])],
    ["a string and a number", "1", 1],
  ])("tells apart values that differ in %s", (_what, one, other) => {
    expect(stableText(one)).not.toBe(stableText(other));
  });
});

import { countTokens, estimateUsage, parseUsage } from "../../../gateway/src/utils/tokens";

describe("countTokens", () => {
  it.each([
    ["", 0],
    ["Hello world", 2],
    ["Echo: Hello world", 3],
    ["  spaced\tout\n\nwords  ", 3],
  ])("counts %p as %p", (text, count) => {
    expect(countTokens(text)).toBe(count);
  });
});

describe("estimateUsage", () => {
  it("counts prompt and completion words", () => {
    expect(estimateUsage("Hello world", "Echo: Hello world")).toEqual({
      prompt_tokens: 2,
      completion_tokens: 3,
      total_tokens: 5,
    });
  });
});

describe("parseUsage", () => {
  it("accepts an upstream's usage and fills a missing total", () => {
    expect(parseUsage({ prompt_tokens: 7, completion_tokens: 11, total_tokens: 18 })).toEqual({
      prompt_tokens: 7,
      completion_tokens: 11,
      total_tokens: 18,
    });
    expect(parseUsage({ prompt_tokens: 7, completion_tokens: 11 })).toEqual({
      prompt_tokens: 7,
      completion_tokens: 11,
      total_tokens: 18,
    });
  });

  it.each([
    [undefined],
    [null],
    ["5"],
    [{ prompt_tokens: -1, completion_tokens: 1 }],
    [{ prompt_tokens: 1.5, completion_tokens: 1 }],
    [{ prompt_tokens: 1 }],
  ])("rejects %p", (value) => {
    expect(parseUsage(value)).toBeUndefined();
  });
});

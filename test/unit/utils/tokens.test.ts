import { countTokens, estimateUsage, parseUsage, TokenCounter } from "../../../gateway/src/utils/tokens";

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

describe("TokenCounter", () => {
  it("counts a text fed in pieces as countTokens counts it whole, a word split across pieces once", () => {
    const text = "Hello there,  how are\tyou doing today?\nFine.";
    for (let size = 1; size <= text.length; size++) {
      const counter = new TokenCounter();
      for (let at = 0; at < text.length; at += size) counter.add(text.slice(at, at + size));
      expect(counter.count).toBe(countTokens(text));
    }
    expect(countTokens(text)).toBe(8);
  });

  it("gives estimateUsage the same completion count as the text would", () => {
    const counted = new TokenCounter().add("one two").add("three").count;
    expect(estimateUsage("a prompt", counted)).toEqual(estimateUsage("a prompt", "one twothree"));
    expect(estimateUsage("a prompt", counted)).toEqual({ prompt_tokens: 2, completion_tokens: 2, total_tokens: 4 });
  });
});

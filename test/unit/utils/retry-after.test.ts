import { parseRetryAfter, retryAfterHeader } from "../../../gateway/src/utils/retry-after";

const NOW = Date.parse("2025-01-01T00:00:00Z");

describe("parseRetryAfter", () => {
  it.each([
    ["7", 7000],
    ["0", 0],
    ["1.5", 1500],
    [" 2 ", 2000],
  ])("reads delay-seconds %p as %p ms", (text, ms) => {
    expect(parseRetryAfter(text, NOW)).toBe(ms);
  });

  it("reads an HTTP date as the time until then", () => {
    expect(parseRetryAfter("Wed, 01 Jan 2025 00:00:30 GMT", NOW)).toBe(30_000);
  });

  it("reads an HTTP date in the past as 0", () => {
    expect(parseRetryAfter("Tue, 31 Dec 2024 23:00:00 GMT", NOW)).toBe(0);
  });

  it("takes the first of repeated headers", () => {
    expect(parseRetryAfter(["3", "9"], NOW)).toBe(3000);
  });

  it.each([[undefined], [""], ["soon"], ["-1"], ["1e3"], ["2025-01-02"], ["99999999999"]])("ignores %p", (text) => {
    expect(parseRetryAfter(text, NOW)).toBeUndefined();
  });
});

describe("retryAfterHeader", () => {
  it("rounds up to whole seconds, so nobody comes back early", () => {
    expect(retryAfterHeader(0)).toBe("0");
    expect(retryAfterHeader(1)).toBe("1");
    expect(retryAfterHeader(7000)).toBe("7");
    expect(retryAfterHeader(7001)).toBe("8");
  });
});

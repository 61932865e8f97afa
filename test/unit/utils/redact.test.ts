import { MIN_REDACTED_PREFIX, quoteRedacted, REDACTED } from "../../../gateway/src/utils/redact";

const KEY = "sk-Q7vN2pL9wX4kR8mT1cZ6bY3h";
const MAX = 300;

/** Every piece of the key at least MIN_REDACTED_PREFIX long that appears in `text`. */
function keyPiecesIn(text: string): string[] {
  const found: string[] = [];
  for (let start = 0; start + MIN_REDACTED_PREFIX <= KEY.length; start++) {
    const piece = KEY.slice(start, start + MIN_REDACTED_PREFIX);
    if (text.includes(piece)) found.push(piece);
  }
  return found;
}

describe("quoteRedacted", () => {
  it("replaces every occurrence of the secret and leaves short text whole", () => {
    expect(quoteRedacted(`bad key ${KEY}, again ${KEY}`, KEY, MAX)).toBe(`bad key ${REDACTED}, again ${REDACTED}`);
  });

  it("cuts long text, marking the cut", () => {
    expect(quoteRedacted("a".repeat(MAX + 50), KEY, MAX)).toBe(`${"a".repeat(MAX)}…`);
  });

  it("passes text through when there is no secret", () => {
    expect(quoteRedacted("plain", undefined, MAX)).toBe("plain");
    expect(quoteRedacted("plain", "", MAX)).toBe("plain");
  });

  // A client controls where the key lands (an upstream quoting the request's `user` field before it).
  it.each(Array.from({ length: KEY.length + 5 }, (_, index) => MAX - KEY.length - 2 + index))(
    "leaves no piece of a key placed at offset %i",
    (offset) => {
      const text = `${"u".repeat(offset)}${KEY} and more text after the key${"!".repeat(MAX)}`;
      const quoted = quoteRedacted(text, KEY, MAX);
      expect(keyPiecesIn(quoted)).toEqual([]);
      expect(quoted.length).toBeLessThanOrEqual(MAX + REDACTED.length + 1);
    },
  );

  it("keeps a trailing beginning shorter than the minimum (a public prefix like 'sk-')", () => {
    const text = `${"u".repeat(MAX - 3)}${KEY.slice(0, -1)}`;
    expect(quoteRedacted(text, KEY, MAX)).toBe(`${"u".repeat(MAX - 3)}sk-…`);
  });
});

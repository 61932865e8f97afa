import { type ApiKeyConfig, sha256 } from "../../../gateway/src/access/config";
import { AuthenticationError } from "../../../gateway/src/errors";
import { bearerToken, carriesKey, KeyRing } from "../../../gateway/src/access/keys";

const ALPHA = "sk-gw-alpha-0123456789ABCDEF";
const BRAVO = "sk-gw-bravo-0123456789ABCDEF";

const alpha: ApiKeyConfig = {
  name: "alpha",
  sha256: sha256(ALPHA),
  backends: ["local"],
  limits: { requestsPerMinute: 10 },
};
const bravo: ApiKeyConfig = { name: "bravo", sha256: sha256(BRAVO), limits: {} };

const ring = new KeyRing([alpha, bravo]);

/** The AuthenticationError identifying this header throws; fails the test when a key is identified. */
function refusal(header: string | undefined, keys: KeyRing = ring): AuthenticationError {
  try {
    keys.identify(header);
  } catch (error) {
    if (error instanceof AuthenticationError) return error;
    throw error;
  }
  throw new Error(`expected '${String(header)}' to be refused`);
}

describe("KeyRing", () => {
  it("is enabled only with keys", () => {
    expect(ring.enabled).toBe(true);
    expect(new KeyRing([]).enabled).toBe(false);
  });

  describe("identify", () => {
    it("returns the config of the key the header carries", () => {
      expect(ring.identify(`Bearer ${ALPHA}`)).toBe(alpha);
    });

    it("identifies each of two keys as itself", () => {
      expect(ring.identify(`Bearer ${ALPHA}`).name).toBe("alpha");
      expect(ring.identify(`Bearer ${BRAVO}`).name).toBe("bravo");
      expect(ring.identify(`Bearer ${BRAVO}`)).toBe(bravo);
    });

    it("accepts the scheme in any case and extra spaces around the token", () => {
      expect(ring.identify(`bearer ${ALPHA}`)).toBe(alpha);
      expect(ring.identify(`BEARER ${ALPHA}`)).toBe(alpha);
      expect(ring.identify(`Bearer   ${ALPHA}  `)).toBe(alpha);
    });

    it("refuses a request without a header as a missing key: 401 with www-authenticate", () => {
      const error = refusal(undefined);
      expect(error.code).toBe("missing_api_key");
      expect(error.status).toBe(401);
      expect(error.type).toBe("invalid_request_error");
      expect(error.headers["www-authenticate"]).toBe('Bearer realm="gateway"');
      expect(error.message).toMatch(/Authorization: Bearer/);
    });

    it.each([
      ["an empty header", ""],
      ["the scheme alone", "Bearer"],
      ["the scheme and a space", "Bearer "],
      ["the key without a scheme", ALPHA],
      ["the Basic scheme", `Basic ${Buffer.from(`user:${ALPHA}`).toString("base64")}`],
      ["the Basic scheme with the key itself", `Basic ${ALPHA}`],
      ["a tab instead of a space", `Bearer\t${ALPHA}`],
      ["two tokens", `Bearer ${ALPHA} ${BRAVO}`],
    ])("treats %s as a missing key", (_what, header) => {
      const error = refusal(header);
      expect(error.code).toBe("missing_api_key");
      expect(error.status).toBe(401);
      expect(error.headers["www-authenticate"]).toBe('Bearer realm="gateway"');
    });

    it.each([
      ["an unknown key", "sk-gw-nobody-0123456789ABCDEF"],
      ["the key in another case", ALPHA.toLowerCase()],
      ["the key in upper case", ALPHA.toUpperCase()],
      ["the key with a prefix", `x${ALPHA}`],
      ["the key with a suffix", `${ALPHA}x`],
      ["the key cut short", ALPHA.slice(0, -1)],
      ["the key's own hash", sha256(ALPHA).toString("hex")],
    ])("refuses %s as an invalid key: 401 with www-authenticate", (_what, token) => {
      const error = refusal(`Bearer ${token}`);
      expect(error.code).toBe("invalid_api_key");
      expect(error.status).toBe(401);
      expect(error.type).toBe("invalid_request_error");
      expect(error.headers["www-authenticate"]).toBe('Bearer realm="gateway"');
    });

    it("never puts the presented key in the error", () => {
      for (const token of [`x${ALPHA}`, "sk-gw-nobody-0123456789ABCDEF", ALPHA.toLowerCase()]) {
        const error = refusal(`Bearer ${token}`);
        expect(error.message).not.toContain(token);
        expect(JSON.stringify(error.headers)).not.toContain(token);
      }
      const basic = refusal(`Basic ${ALPHA}`);
      expect(basic.message).not.toContain(ALPHA);
    });

    it("refuses every key when no key is configured", () => {
      expect(refusal(`Bearer ${ALPHA}`, new KeyRing([])).code).toBe("invalid_api_key");
    });
  });
});

describe("bearerToken", () => {
  it("is the token of a Bearer header", () => {
    expect(bearerToken("Bearer abc.def-123")).toBe("abc.def-123");
  });

  it("accepts the scheme in any case", () => {
    expect(bearerToken("bearer tok")).toBe("tok");
    expect(bearerToken("bEaReR tok")).toBe("tok");
  });

  it("allows several spaces after the scheme and trailing spaces", () => {
    expect(bearerToken("Bearer    tok")).toBe("tok");
    expect(bearerToken("Bearer tok   ")).toBe("tok");
  });

  it.each([
    ["no header", undefined],
    ["an empty header", ""],
    ["the scheme alone", "Bearer"],
    ["the scheme and spaces", "Bearer   "],
    ["no space after the scheme", "Bearertok"],
    ["another scheme", "Basic dXNlcjpwYXNz"],
    ["a token without scheme", "tok"],
    ["a leading space", " Bearer tok"],
    ["two tokens", "Bearer tok other"],
    ["a tab separator", "Bearer\ttok"],
    ["a newline after the token", "Bearer tok\n"],
  ])("is undefined for %s", (_what, header) => {
    expect(bearerToken(header)).toBeUndefined();
  });

  it("keeps characters such as '=' and '/' of a token", () => {
    expect(bearerToken("Bearer a/b+c==")).toBe("a/b+c==");
  });
});

describe("carriesKey", () => {
  const hash = sha256(ALPHA);

  it("is true for a Bearer header carrying exactly that key", () => {
    expect(carriesKey(`Bearer ${ALPHA}`, hash)).toBe(true);
    expect(carriesKey(`bearer ${ALPHA}`, hash)).toBe(true);
  });

  it.each([
    ["no header", undefined],
    ["another key", `Bearer ${BRAVO}`],
    ["the key with a suffix", `Bearer ${ALPHA}x`],
    ["the key in lower case", `Bearer ${ALPHA.toLowerCase()}`],
    ["the key without a scheme", ALPHA],
    ["the Basic scheme", `Basic ${ALPHA}`],
  ])("is false for %s", (_what, header) => {
    expect(carriesKey(header, hash)).toBe(false);
  });
});

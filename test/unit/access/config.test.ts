import { createHash } from "node:crypto";
import { parse as parseYaml } from "yaml";
import { defaultBackendRegistry } from "../../../gateway/src/backends";
import { DEFAULT_MAX_CONCURRENT_REQUESTS, MIN_KEY_CHARS } from "../../../gateway/src/access/config";
import { type GatewayConfig, parseConfig } from "../../../gateway/src/config/config";
import { ConfigError } from "../../../gateway/src/config/errors";

const registry = defaultBackendRegistry();

const BACKENDS = `
default_backend: local
backends:
  - name: local
    type: echo
  - name: remote
    type: http
    url: http://127.0.0.1:8081
`;

const KEY_A = "alpha-key-0123456789abcdef";
const KEY_B = "bravo-key-0123456789abcdef";

function hex(text: string): string {
  return createHash("sha256").update(text, "utf8").digest("hex");
}

function parse(yaml: string, env: Record<string, string | undefined> = {}): GatewayConfig {
  return parseConfig(parseYaml(BACKENDS + yaml), registry, env);
}

/** The ConfigError a config with this access section fails with. */
function refusal(yaml: string, env: Record<string, string | undefined> = {}): ConfigError {
  try {
    parse(yaml, env);
  } catch (error) {
    if (error instanceof ConfigError) return error;
    throw error;
  }
  throw new Error("expected a ConfigError");
}

describe("access config (auth, limits, max_concurrent_requests)", () => {
  describe("without an auth section", () => {
    it("turns auth off: no keys, no metrics key, nothing hashed in the file", () => {
      const { access } = parse("");
      expect(access.keys).toEqual([]);
      expect(access.metricsKey).toBeUndefined();
      expect(access.hashesInFile).toBe(false);
    });

    it("caps requests in flight at 1024 and sets no per-client limits", () => {
      const { access } = parse("");
      expect(DEFAULT_MAX_CONCURRENT_REQUESTS).toBe(1024);
      expect(access.maxConcurrentRequests).toBe(1024);
      expect(access.limits).toEqual({});
    });

    it("reads max_concurrent_requests and the top-level limits", () => {
      const { access } = parse(`
max_concurrent_requests: 7
limits:
  requests_per_minute: 60
  tokens_per_minute: 5000
  concurrent_requests: 2
`);
      expect(access.maxConcurrentRequests).toBe(7);
      expect(access.limits).toEqual({ requestsPerMinute: 60, tokensPerMinute: 5000, concurrentRequests: 2 });
    });

    it("refuses a max_concurrent_requests below 1", () => {
      expect(refusal("max_concurrent_requests: 0\n").path).toBe("max_concurrent_requests");
    });

    it("refuses a limit that is not a positive whole number", () => {
      expect(refusal("limits:\n  requests_per_minute: 0\n").path).toBe("limits.requests_per_minute");
      expect(refusal("limits:\n  tokens_per_minute: 1.5\n").path).toBe("limits.tokens_per_minute");
    });
  });

  describe("a key given by its sha256", () => {
    it("keeps the hash as the 32-byte SHA-256 of the key", () => {
      const { access } = parse(`
auth:
  keys:
    - name: alpha
      sha256: ${hex(KEY_A)}
`);
      expect(access.keys).toHaveLength(1);
      const key = access.keys[0];
      expect(key?.name).toBe("alpha");
      expect(Buffer.isBuffer(key?.sha256)).toBe(true);
      expect(key?.sha256.equals(createHash("sha256").update(KEY_A).digest())).toBe(true);
      expect(key?.backends).toBeUndefined();
    });

    it("accepts the hex in upper case", () => {
      const { access } = parse(`
auth:
  keys:
    - name: alpha
      sha256: ${hex(KEY_A).toUpperCase()}
`);
      expect(access.keys[0]?.sha256.toString("hex")).toBe(hex(KEY_A));
    });

    it.each([
      ["too short", hex(KEY_A).slice(0, 63)],
      ["too long", `${hex(KEY_A)}0`],
      ["not hex", `${hex(KEY_A).slice(0, 63)}g`],
    ])("refuses a sha256 that is %s", (_why, value) => {
      const error = refusal(`
auth:
  keys:
    - name: alpha
      sha256: "${value}"
`);
      expect(error.path).toBe("auth.keys[0].sha256");
      expect(error.message).toMatch(/64 hex digits/);
    });
  });

  describe("a key given by key_env", () => {
    const yaml = `
auth:
  keys:
    - name: alpha
      key_env: ALPHA_KEY
`;

    it("hashes the variable's value at load", () => {
      const { access } = parse(yaml, { ALPHA_KEY: KEY_A });
      expect(access.keys[0]?.sha256.toString("hex")).toBe(hex(KEY_A));
    });

    it.each([
      ["missing", undefined, /ALPHA_KEY is not set/],
      ["empty", "", /ALPHA_KEY is not set/],
      ["shorter than 16 characters", "x".repeat(MIN_KEY_CHARS - 1), /at least 16 characters/],
      ["containing a space", "alpha-key 0123456789", /whitespace/],
      ["containing a tab", "alpha-key\t0123456789", /whitespace/],
    ])("refuses the key when the variable is %s, naming the key path", (_why, value, message) => {
      const error = refusal(yaml, { ALPHA_KEY: value });
      expect(error.path).toBe("auth.keys[0].key_env");
      expect(error.message).toMatch(/^auth\.keys\[0\]\.key_env: /);
      expect(error.message).toMatch(message);
    });

    it("accepts a key of exactly 16 characters", () => {
      expect(parse(yaml, { ALPHA_KEY: "k".repeat(MIN_KEY_CHARS) }).access.keys).toHaveLength(1);
    });

    it("never puts the rejected key in the message", () => {
      const short = "shortsecret";
      expect(refusal(yaml, { ALPHA_KEY: short }).message).not.toContain(short);
      const spaced = "has a space but long enough";
      expect(refusal(yaml, { ALPHA_KEY: spaced }).message).not.toContain(spaced);
    });

    it("refuses a key_env that is not a variable name", () => {
      const error = refusal(yaml.replace("ALPHA_KEY", "ALPHA-KEY"), { "ALPHA-KEY": KEY_A });
      expect(error.path).toBe("auth.keys[0].key_env");
    });
  });

  describe("how a key is written", () => {
    it("refuses a plain key, pointing to sha256 and key_env", () => {
      const error = refusal(`
auth:
  keys:
    - name: alpha
      key: ${KEY_A}
`);
      expect(error.path).toBe("auth.keys[0].key");
      expect(error.message).toMatch(/use sha256 or key_env/);
      expect(error.message).not.toContain(KEY_A);
    });

    it("refuses a plain key even next to a sha256", () => {
      const error = refusal(`
auth:
  keys:
    - name: alpha
      sha256: ${hex(KEY_A)}
      key: ${KEY_A}
`);
      expect(error.path).toBe("auth.keys[0].key");
    });

    it("refuses both sha256 and key_env", () => {
      const error = refusal(
        `
auth:
  keys:
    - name: alpha
      sha256: ${hex(KEY_A)}
      key_env: ALPHA_KEY
`,
        { ALPHA_KEY: KEY_A },
      );
      expect(error.path).toBe("auth.keys[0]");
      expect(error.message).toMatch(/exactly one of sha256 and key_env/);
    });

    it("refuses neither sha256 nor key_env", () => {
      const error = refusal(`
auth:
  keys:
    - name: alpha
`);
      expect(error.path).toBe("auth.keys[0]");
      expect(error.message).toMatch(/exactly one of sha256 and key_env/);
    });

    it("requires a name", () => {
      expect(
        refusal(`
auth:
  keys:
    - sha256: ${hex(KEY_A)}
`).path,
      ).toBe("auth.keys[0].name");
    });

    it("refuses a name that could not be a log field or metric label", () => {
      expect(
        refusal(`
auth:
  keys:
    - name: "has space"
      sha256: ${hex(KEY_A)}
`).path,
      ).toBe("auth.keys[0].name");
    });

    it("refuses an empty key list", () => {
      expect(refusal("auth:\n  keys: []\n").path).toBe("auth.keys");
      expect(refusal("auth: {}\n").path).toBe("auth.keys");
    });
  });

  describe("uniqueness", () => {
    it("refuses two keys with the same name", () => {
      const error = refusal(`
auth:
  keys:
    - name: alpha
      sha256: ${hex(KEY_A)}
    - name: alpha
      sha256: ${hex(KEY_B)}
`);
      expect(error.path).toBe("auth.keys[1].name");
      expect(error.message).toMatch(/already used/);
    });

    it("refuses the same key configured twice, even once as a hash and once from the environment", () => {
      const error = refusal(
        `
auth:
  keys:
    - name: alpha
      sha256: ${hex(KEY_A)}
    - name: bravo
      key_env: BRAVO_KEY
`,
        { BRAVO_KEY: KEY_A },
      );
      expect(error.path).toBe("auth.keys[1]");
      expect(error.message).toMatch(/the same key is configured twice/);
    });

    it("refuses the same hash written in upper and lower case", () => {
      const error = refusal(`
auth:
  keys:
    - name: alpha
      sha256: ${hex(KEY_A)}
    - name: bravo
      sha256: ${hex(KEY_A).toUpperCase()}
`);
      expect(error.path).toBe("auth.keys[1]");
    });

    it("accepts two different keys and keeps their order", () => {
      const { access } = parse(
        `
auth:
  keys:
    - name: alpha
      sha256: ${hex(KEY_A)}
    - name: bravo
      key_env: BRAVO_KEY
`,
        { BRAVO_KEY: KEY_B },
      );
      expect(access.keys.map((key) => key.name)).toEqual(["alpha", "bravo"]);
      expect(access.keys[1]?.sha256.toString("hex")).toBe(hex(KEY_B));
    });
  });

  describe("a key's backends allowlist", () => {
    it("keeps the backends it names", () => {
      const { access } = parse(`
auth:
  keys:
    - name: alpha
      sha256: ${hex(KEY_A)}
      backends: [remote]
`);
      expect(access.keys[0]?.backends).toEqual(["remote"]);
    });

    it("refuses an unknown backend, naming its index", () => {
      const error = refusal(`
auth:
  keys:
    - name: alpha
      sha256: ${hex(KEY_A)}
      backends: [nowhere]
`);
      expect(error.path).toBe("auth.keys[0].backends[0]");
      expect(error.message).toMatch(/'nowhere' is not the name of a backend/);
    });

    it("names the index of the unknown one among known ones", () => {
      expect(
        refusal(`
auth:
  keys:
    - name: alpha
      sha256: ${hex(KEY_A)}
      backends: [local, nowhere]
`).path,
      ).toBe("auth.keys[0].backends[1]");
    });

    it("refuses an empty allowlist rather than reading it as 'everything'", () => {
      expect(
        refusal(`
auth:
  keys:
    - name: alpha
      sha256: ${hex(KEY_A)}
      backends: []
`).path,
      ).toBe("auth.keys[0].backends");
    });
  });

  describe("limits of keys", () => {
    const yaml = `
limits:
  requests_per_minute: 100
  tokens_per_minute: 10000
auth:
  keys:
    - name: alpha
      sha256: ${hex(KEY_A)}
      limits:
        concurrent_requests: 3
    - name: bravo
      sha256: ${hex(KEY_B)}
`;

    it("replaces the top-level limits wholly with a key's own", () => {
      const alpha = parse(yaml).access.keys[0];
      expect(alpha?.limits).toEqual({ concurrentRequests: 3 });
    });

    it("gives a key without its own limits the top-level ones", () => {
      const { access } = parse(yaml);
      expect(access.keys[1]?.limits).toEqual({ requestsPerMinute: 100, tokensPerMinute: 10000 });
      expect(access.limits).toEqual({ requestsPerMinute: 100, tokensPerMinute: 10000 });
    });

    it("names the key path of a bad per-key limit", () => {
      expect(refusal(yaml.replace("concurrent_requests: 3", "concurrent_requests: -1")).path).toBe(
        "auth.keys[0].limits.concurrent_requests",
      );
    });
  });

  describe("typo protection", () => {
    it("refuses an unknown setting inside the top-level limits", () => {
      const error = refusal("limits:\n  request_per_minute: 10\n");
      expect(error.path).toBe("limits.request_per_minute");
      expect(error.message).toMatch(/is not a known setting/);
    });

    it("refuses an unknown setting inside a key's limits", () => {
      expect(
        refusal(`
auth:
  keys:
    - name: alpha
      sha256: ${hex(KEY_A)}
      limits:
        token_per_minute: 10
`).path,
      ).toBe("auth.keys[0].limits.token_per_minute");
    });

    it("refuses an unknown setting in a key entry", () => {
      expect(
        refusal(`
auth:
  keys:
    - name: alpha
      sha256: ${hex(KEY_A)}
      backend: [local]
`).path,
      ).toBe("auth.keys[0].backend");
    });

    it("refuses an unknown setting in auth", () => {
      expect(
        refusal(`
auth:
  metric_key:
    sha256: ${hex(KEY_B)}
  keys:
    - name: alpha
      sha256: ${hex(KEY_A)}
`).path,
      ).toBe("auth.metric_key");
    });

    it("refuses an unknown setting in metrics_key", () => {
      expect(
        refusal(`
auth:
  metrics_key:
    sha256: ${hex(KEY_B)}
    name: metrics
  keys:
    - name: alpha
      sha256: ${hex(KEY_A)}
`).path,
      ).toBe("auth.metrics_key.name");
    });
  });

  describe("metrics_key", () => {
    it("is kept as a hash, apart from the API keys", () => {
      const { access } = parse(
        `
auth:
  metrics_key:
    key_env: METRICS_KEY
  keys:
    - name: alpha
      sha256: ${hex(KEY_A)}
`,
        { METRICS_KEY: KEY_B },
      );
      expect(access.metricsKey?.toString("hex")).toBe(hex(KEY_B));
      expect(access.keys.map((key) => key.name)).toEqual(["alpha"]);
    });

    it("refuses a metrics key equal to an API key", () => {
      const error = refusal(
        `
auth:
  metrics_key:
    key_env: METRICS_KEY
  keys:
    - name: alpha
      sha256: ${hex(KEY_A)}
`,
        { METRICS_KEY: KEY_A },
      );
      expect(error.path).toBe("auth.metrics_key");
      expect(error.message).toMatch(/must differ from every API key/);
    });

    it("refuses a plain metrics key", () => {
      expect(
        refusal(`
auth:
  metrics_key:
    key: ${KEY_B}
  keys:
    - name: alpha
      sha256: ${hex(KEY_A)}
`).path,
      ).toBe("auth.metrics_key.key");
    });
  });

  describe("hashesInFile", () => {
    it("is false when every key comes from the environment", () => {
      const { access } = parse(
        `
auth:
  metrics_key:
    key_env: METRICS_KEY
  keys:
    - name: alpha
      key_env: ALPHA_KEY
`,
        { ALPHA_KEY: KEY_A, METRICS_KEY: KEY_B },
      );
      expect(access.hashesInFile).toBe(false);
    });

    it("does not count an empty sha256 line as a hash in the file", () => {
      const { access } = parse(
        `
auth:
  keys:
    - name: alpha
      key_env: ALPHA_KEY
      sha256:
`,
        { ALPHA_KEY: KEY_A },
      );
      expect(access.hashesInFile).toBe(false);
    });

    it("is true when one API key's sha256 is written in the file", () => {
      const { access } = parse(
        `
auth:
  keys:
    - name: alpha
      key_env: ALPHA_KEY
    - name: bravo
      sha256: ${hex(KEY_B)}
`,
        { ALPHA_KEY: KEY_A },
      );
      expect(access.hashesInFile).toBe(true);
    });

    it("is true when only the metrics key's sha256 is written in the file", () => {
      const { access } = parse(
        `
auth:
  metrics_key:
    sha256: ${hex(KEY_B)}
  keys:
    - name: alpha
      key_env: ALPHA_KEY
`,
        { ALPHA_KEY: KEY_A },
      );
      expect(access.hashesInFile).toBe(true);
    });
  });

  describe("secretEnv", () => {
    it("is empty when nothing is read from the environment", () => {
      expect(parse("").secretEnv).toEqual([]);
    });

    it("lists the variables read through key_env and an http backend's api_key_env, and nothing else", () => {
      const yaml = `
default_backend: local
backends:
  - name: local
    type: echo
  - name: remote
    type: http
    url: http://127.0.0.1:8081
    api_key_env: UPSTREAM_KEY
auth:
  metrics_key:
    key_env: METRICS_KEY
  keys:
    - name: alpha
      key_env: ALPHA_KEY
    - name: bravo
      sha256: ${hex(KEY_B)}
`;
      const env = {
        UPSTREAM_KEY: "sk-upstream",
        ALPHA_KEY: KEY_A,
        METRICS_KEY: "metrics-key-0123456789",
        UNRELATED: "x",
      };
      const config = parseConfig(parseYaml(yaml), registry, env);
      expect([...config.secretEnv].sort()).toEqual(["ALPHA_KEY", "METRICS_KEY", "UPSTREAM_KEY"]);
    });
  });
});

describe("limits_store", () => {
  it("is absent unless configured", () => {
    expect(parse("").access.store).toBeUndefined();
  });

  it("reads a redis:// URL with its defaults", () => {
    expect(parse("limits_store:\n  url: redis://valkey:6379\n").access.store).toEqual({
      host: "valkey",
      port: 6379,
      db: 0,
      tls: false,
      display: "redis://valkey:6379/0",
      onStoreFailure: "local",
      expectedReplicas: 1,
      timeoutMs: 50,
      leaseSeconds: 30,
      keyPrefix: "gateway:",
    });
  });

  it("reads rediss:// as TLS, a user, a database, the password from password_env, and every setting", () => {
    const config = parse(
      `limits_store:
  url: rediss://gateway@store.example:6380/2
  password_env: STORE_PASSWORD
  on_store_failure: closed
  expected_replicas: 3
  timeout_ms: 20
  lease_seconds: 10
  key_prefix: "gw:"
`,
      { STORE_PASSWORD: "s3cret-store-password" },
    );
    expect(config.access.store).toEqual({
      host: "store.example",
      port: 6380,
      db: 2,
      tls: true,
      username: "gateway",
      password: "s3cret-store-password",
      display: "rediss://gateway@store.example:6380/2",
      onStoreFailure: "closed",
      expectedReplicas: 3,
      timeoutMs: 20,
      leaseSeconds: 10,
      keyPrefix: "gw:",
    });
    // The password is a secret read from the environment: the file-permission check knows of it.
    expect(config.secretEnv).toContain("STORE_PASSWORD");
  });

  it.each([
    ["url: http://valkey:6379", "limits_store.url", /redis:\/\/ or rediss:\/\//],
    ["url: not a url", "limits_store.url", /must be a URL/],
    ["url: redis://:hunter2-password@valkey:6379", "limits_store.url", /must not contain a password/],
    ["url: redis://valkey:6379/x", "limits_store.url", /database number/],
    ["url: redis://valkey:6379?db=2", "limits_store.url", /query/],
    ["password_env: STORE_PASSWORD\n  url: redis://valkey", "limits_store.password_env", /is not set/],
    ["url: redis://valkey\n  on_store_failure: ignore", "limits_store.on_store_failure", /local, open, closed/],
    ["url: redis://valkey\n  expected_replicas: 0", "limits_store.expected_replicas", /whole number from 1/],
    ["url: redis://valkey\n  timeout_ms: 0", "limits_store.timeout_ms", /whole number from 1/],
    ["url: redis://valkey\n  key_prefix: 'a{b}'", "limits_store.key_prefix", /braces/],
    ["url: redis://valkey\n  timout_ms: 20", "limits_store.timout_ms", /not a known setting/],
    ["{}", "limits_store.url", /is required/],
  ])("refuses %s", (body, path, message) => {
    const error = refusal(`limits_store:\n  ${body}\n`);
    expect(error.path).toBe(path);
    expect(error.message).toMatch(message);
    // Whatever was wrong, the password never appears in the error.
    expect(error.message).not.toContain("hunter2");
  });
});

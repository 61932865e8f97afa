import {
  completionsPath,
  type HttpBackendOptions,
  httpBackendFactory,
} from "../../../../gateway/src/backends/http/factory";
import { ResponseBudget } from "../../../../gateway/src/backends/response-budget";
import { ConfigError } from "../../../../gateway/src/config/errors";
import { ConfigFields } from "../../../../gateway/src/config/fields";
import { createLogger } from "../../../../gateway/src/observability/logger";

const URL_FIELD = { url: "http://127.0.0.1:8081" };

/** The options parsed from one backend's fields, as the config loader would for the second backend. */
function options(
  fields: Record<string, unknown>,
  env: Record<string, string> = {},
  base: Record<string, unknown> = URL_FIELD,
): HttpBackendOptions {
  return httpBackendFactory.parseOptions(ConfigFields.from({ ...base, ...fields }, "backends[1]"), env);
}

function problem(
  fields: Record<string, unknown>,
  env: Record<string, string> = {},
  base: Record<string, unknown> = URL_FIELD,
): string {
  try {
    options(fields, env, base);
  } catch (error) {
    if (error instanceof ConfigError) return error.message;
    throw error;
  }
  throw new Error("expected a ConfigError");
}

describe("httpBackendFactory: url", () => {
  it("gives http backends their endpoint path, timeout and upstream model", () => {
    const parsed = options({ timeout: 5, model: "llama-3" });
    expect(parsed.targets).toMatchObject([
      { name: "0", origin: "http://127.0.0.1:8081", path: "/v1/chat/completions", weight: 1 },
    ]);
    expect(parsed).toMatchObject({
      balance: "least_outstanding",
      timeoutSeconds: 5,
      model: "llama-3",
    });
  });

  it("does not double /v1 when the base URL already ends with it", () => {
    expect(options({ url: "https://api.example.test/v1/" }).targets[0]?.path).toBe("/v1/chat/completions");
  });

  it("keeps a base path in front of /v1", () => {
    expect(options({ url: "http://10.0.0.1:9000/proxy" }).targets[0]?.path).toBe("/proxy/v1/chat/completions");
  });

  it("is required", () => {
    expect(problem({ url: undefined })).toBe("backends[1].url: is required");
  });
});

describe("completionsPath", () => {
  it.each([
    ["http://h", "/v1/chat/completions"],
    ["http://h/", "/v1/chat/completions"],
    ["http://h/v1", "/v1/chat/completions"],
    ["http://h/v1//", "/v1/chat/completions"],
    ["http://h/api/v1/", "/api/v1/chat/completions"],
    ["http://h/v1beta", "/v1beta/v1/chat/completions"],
  ])("%s -> %s", (url, path) => {
    expect(completionsPath(new URL(url))).toBe(path);
  });
});

describe("httpBackendFactory: timeouts", () => {
  it("defaults timeout to 60 seconds, connect_timeout to 10 and idle_timeout to timeout", () => {
    expect(options({})).toMatchObject({ timeoutSeconds: 60, connectTimeoutSeconds: 10, idleTimeoutSeconds: 60 });
  });

  it("defaults connect_timeout to timeout when that is shorter than 10 seconds", () => {
    expect(options({ timeout: 5 }).connectTimeoutSeconds).toBe(5);
  });

  it("defaults idle_timeout (between stream events) to timeout, and reads it when given", () => {
    expect(options({ timeout: 5 }).idleTimeoutSeconds).toBe(5);
    expect(options({ timeout: 5, idle_timeout: 2 }).idleTimeoutSeconds).toBe(2);
    expect(problem({ timeout: 5, idle_timeout: 0 })).toBe(
      "backends[1].idle_timeout: must be a number greater than 0 and at most 3600",
    );
  });

  it("reads fractions of a second and accepts up to an hour", () => {
    expect(options({ timeout: 3600, connect_timeout: 0.5, idle_timeout: 3600 })).toMatchObject({
      timeoutSeconds: 3600,
      connectTimeoutSeconds: 0.5,
      idleTimeoutSeconds: 3600,
    });
  });

  it.each(["timeout", "connect_timeout", "idle_timeout"])("refuses %s of 0, over an hour, or not a number", (key) => {
    const message = `backends[1].${key}: must be a number greater than 0 and at most 3600`;
    expect(problem({ [key]: 0 })).toBe(message);
    expect(problem({ [key]: 3600.5 })).toBe(message);
    expect(problem({ [key]: "5" })).toBe(message);
  });
});

describe("httpBackendFactory: model", () => {
  it("is left out when not given, so the client's model is sent", () => {
    expect(options({})).not.toHaveProperty("model");
  });

  it("must be a non-empty string", () => {
    expect(problem({ model: "" })).toBe("backends[1].model: must be a non-empty string");
    expect(problem({ model: 3 })).toBe("backends[1].model: must be a non-empty string");
  });
});

describe("httpBackendFactory: size limits", () => {
  it("defaults max_event_bytes to 8 MiB, and reads it when given", () => {
    expect(options({}).maxEventBytes).toBe(8 * 1024 * 1024);
    expect(options({ max_event_bytes: 65536 }).maxEventBytes).toBe(65536);
  });

  it("defaults max_response_bytes to 32 MiB, and reads it when given", () => {
    expect(options({}).maxResponseBytes).toBe(32 * 1024 * 1024);
    expect(options({ max_response_bytes: 65536 }).maxResponseBytes).toBe(65536);
  });

  it.each(["max_event_bytes", "max_response_bytes"])("accepts %s from 1 KiB to 1 GiB", (key) => {
    expect(() => options({ [key]: 1024 })).not.toThrow();
    expect(() => options({ [key]: 1024 * 1024 * 1024 })).not.toThrow();
  });

  it.each([
    ["max_event_bytes", 1023],
    ["max_event_bytes", 1.5],
    ["max_event_bytes", "8MB"],
    ["max_event_bytes", 1024 * 1024 * 1024 + 1],
    ["max_response_bytes", 1023],
    ["max_response_bytes", 1.5],
    ["max_response_bytes", "32MB"],
    ["max_response_bytes", 1024 * 1024 * 1024 + 1],
  ])("rejects %s: %p", (key, value) => {
    expect(problem({ [key]: value })).toBe(`backends[1].${key}: must be a whole number from 1024 to 1073741824`);
  });
});

describe("httpBackendFactory: api_key_env", () => {
  it("sends no key when not given", () => {
    expect(options({})).not.toHaveProperty("apiKey");
  });

  it("must name an environment variable that is set and not empty", () => {
    expect(problem({ api_key_env: "UPSTREAM-KEY" }, { "UPSTREAM-KEY": "sk-test" })).toBe(
      "backends[1].api_key_env: must be an environment variable name",
    );
    expect(problem({ api_key_env: "UPSTREAM_KEY" }, { UPSTREAM_KEY: "" })).toBe(
      "backends[1].api_key_env: environment variable UPSTREAM_KEY is not set",
    );
  });
});

describe("httpBackendFactory: targets", () => {
  /** Fields without the default `url`, as a pool is configured. */
  const pool = (fields: Record<string, unknown>, env: Record<string, string> = {}) => options(fields, env, {});
  const poolProblem = (fields: Record<string, unknown>, env: Record<string, string> = {}) => problem(fields, env, {});
  const three = [
    { url: "http://vllm-1:8000/v1", name: "one" },
    { url: "http://vllm-2:8000/v1", weight: 2 },
    { url: "https://vllm-3.example.test/v1", api_key_env: "THIRD_KEY" },
  ];

  it("reads each target's url, name (else its index), weight and key (else the backend's)", () => {
    const parsed = pool({ targets: three, api_key_env: "KEY" }, { KEY: "sk-all", THIRD_KEY: "sk-third" });
    expect(parsed.targets).toMatchObject([
      { name: "one", origin: "http://vllm-1:8000", path: "/v1/chat/completions", weight: 1, apiKey: "sk-all" },
      { name: "1", origin: "http://vllm-2:8000", weight: 2, apiKey: "sk-all" },
      { name: "2", origin: "https://vllm-3.example.test", weight: 1, apiKey: "sk-third" },
    ]);
    expect(parsed.balance).toBe("least_outstanding");
    expect(parsed).not.toHaveProperty("healthCheck");
    expect(parsed).not.toHaveProperty("affinity");
    expect(parsed).not.toHaveProperty("dnsRefreshSeconds");
  });

  it("reads balance, affinity, health_check and discovery", () => {
    const parsed = pool({
      targets: three.slice(0, 2),
      balance: "round_robin",
      affinity: { header: "X-Session-Id" },
      health_check: { path: "/healthz", interval: 3 },
      discovery: "dns",
      dns_refresh: 30,
    });
    expect(parsed).toMatchObject({
      balance: "round_robin",
      affinity: { header: "x-session-id" },
      healthCheck: { path: "/healthz", intervalSeconds: 3, timeoutSeconds: 2 },
      dnsRefreshSeconds: 30,
    });
    expect(pool({ url: "http://a:1", affinity: { body: "user" } }).affinity).toEqual({ user: true });
    expect(pool({ url: "http://a:1", health_check: {} }).healthCheck).toEqual({
      path: "/health",
      intervalSeconds: 5,
      timeoutSeconds: 2,
    });
    expect(pool({ url: "http://a:1", discovery: "dns" }).dnsRefreshSeconds).toBe(10);
  });

  it("refuses what it cannot mean, naming the key", () => {
    expect(poolProblem({ url: "http://a:1", targets: three })).toBe(
      "backends[1].targets: give either url (one target) or targets, not both",
    );
    expect(poolProblem({})).toBe("backends[1].url: is required");
    expect(poolProblem({ targets: [] })).toBe("backends[1].targets: must be a non-empty list");
    expect(
      poolProblem({
        targets: [
          { url: "http://a:1", name: "x" },
          { url: "http://b:1", name: "x" },
        ],
      }),
    ).toBe("backends[1].targets[1].name: 'x' is already used by another target");
    expect(poolProblem({ targets: [{ url: "http://a:1", weight: 0 }] })).toBe(
      "backends[1].targets[0].weight: must be a number greater than 0 and at most 1000",
    );
    expect(poolProblem({ targets: [{ url: "http://a:1", wieght: 2 }] })).toBe(
      "backends[1].targets[0].wieght: is not a known setting",
    );
    expect(poolProblem({ targets: [{ url: "http://a:1", api_key_env: "MISSING" }] })).toBe(
      "backends[1].targets[0].api_key_env: environment variable MISSING is not set",
    );
    expect(poolProblem({ targets: Array.from({ length: 65 }, () => ({ url: "http://a:1" })) })).toBe(
      "backends[1].targets: at most 64 targets",
    );
    expect(poolProblem({ url: "http://a:1", balance: "fastest" })).toBe(
      "backends[1].balance: must be one of least_outstanding, round_robin, weighted_random",
    );
    expect(poolProblem({ url: "http://a:1", affinity: { body: "messages" } })).toBe(
      "backends[1].affinity: must be {header: NAME} or {body: user}",
    );
    expect(poolProblem({ url: "http://a:1", affinity: { header: "bad header" } })).toBe(
      "backends[1].affinity.header: must be an HTTP header name",
    );
    expect(poolProblem({ url: "http://a:1", health_check: { path: "health" } })).toBe(
      "backends[1].health_check.path: must be a path starting with / (no query)",
    );
    expect(poolProblem({ url: "http://a:1", health_check: { interval: 1, timeout: 2 } })).toBe(
      "backends[1].health_check.timeout: must not be longer than the interval",
    );
    expect(poolProblem({ url: "http://a:1", discovery: "consul" })).toBe(
      "backends[1].discovery: must be one of none, dns",
    );
    expect(poolProblem({ url: "http://a:1", dns_refresh: 5 })).toBe("backends[1].dns_refresh: needs discovery: dns");
  });
});

describe("httpBackendFactory.create", () => {
  it("builds an http backend aimed at the endpoint, with its timeout", async () => {
    const context = {
      env: {},
      logger: createLogger({ level: "error", service: "test" }),
      responseBudget: new ResponseBudget(1024),
    };
    const backend = httpBackendFactory.create(
      "remote",
      options({ url: "http://127.0.0.1:8081/proxy", timeout: 7 }),
      context,
    );
    try {
      expect(backend).toMatchObject({
        name: "remote",
        type: "http",
        target: "http://127.0.0.1:8081/proxy/v1/chat/completions",
        timeoutSeconds: 7,
      });
    } finally {
      await backend.close();
    }
  });
});

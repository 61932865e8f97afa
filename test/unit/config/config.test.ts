import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse as parseYaml } from "yaml";
import { defaultBackendRegistry } from "../../../gateway/src/backends";
import type { HttpBackendOptions } from "../../../gateway/src/backends/http/factory";
import { MAX_BACKENDS, parseConfig } from "../../../gateway/src/config/config";
import { ConfigError } from "../../../gateway/src/config/errors";
import { environmentWithDotEnv, loadConfigFile } from "../../../gateway/src/config/load";

const registry = defaultBackendRegistry();

function parse(yaml: string, env: Record<string, string> = {}) {
  return parseConfig(parseYaml(yaml), registry, env);
}

function problem(yaml: string, env: Record<string, string> = {}): string {
  try {
    parse(yaml, env);
  } catch (error) {
    if (error instanceof ConfigError) return error.message;
    throw error;
  }
  throw new Error("expected a ConfigError");
}

const VALID = `
default_backend: local
backends:
  - name: local
    type: echo
  - name: remote
    type: http
    url: http://127.0.0.1:8081
    timeout: 5
    model: llama-3
`;

describe("parseConfig", () => {
  it("reads backends in order with the default backend", () => {
    const config = parse(VALID);
    expect(config.defaultBackend).toBe("local");
    expect(config.backends.map((b) => [b.name, b.type])).toEqual([
      ["local", "echo"],
      ["remote", "http"],
    ]);
  });

  it("names the key path of a bad URL", () => {
    expect(problem(VALID.replace("http://127.0.0.1:8081", "ftp://example.test"))).toBe(
      "backends[1].url: must be an http(s) URL",
    );
    expect(problem(VALID.replace("http://127.0.0.1:8081", "not a url"))).toBe(
      "backends[1].url: must be an http(s) URL",
    );
  });

  it("requires default_backend to name a backend", () => {
    expect(problem(VALID.replace("default_backend: local", "default_backend: nowhere"))).toMatch(
      /^default_backend: 'nowhere' is not the name of a backend/,
    );
  });

  it("requires default_backend", () => {
    expect(problem(VALID.replace("default_backend: local", ""))).toBe("default_backend: is required");
  });

  it("rejects duplicate backend names", () => {
    expect(problem(VALID.replace("name: remote", "name: local"))).toBe(
      "backends[1].name: 'local' is already used by another backend",
    );
  });

  it("rejects an unknown backend type and lists the known ones", () => {
    expect(problem(VALID.replace("type: echo", "type: grpc"))).toBe(
      "backends[0].type: unknown backend type 'grpc' (known: echo, http)",
    );
  });

  it("rejects keys nobody reads, so typos fail loudly", () => {
    expect(problem(VALID.replace("timeout: 5", "timout: 5"))).toBe("backends[1].timout: is not a known setting");
    expect(problem(`${VALID}\nextra: 1\n`)).toBe("extra: is not a known setting");
  });

  it("checks each type's own fields", () => {
    expect(problem(VALID.replace("timeout: 5", "timeout: -1"))).toBe(
      "backends[1].timeout: must be a number greater than 0 and at most 3600",
    );
    expect(problem(VALID.replace("timeout: 5", 'timeout: "5"'))).toMatch(/^backends\[1\]\.timeout: must be a number/);
    expect(problem(VALID.replace("    url: http://127.0.0.1:8081\n", ""))).toBe("backends[1].url: is required");
  });

  it("refuses credentials in a URL", () => {
    expect(problem(VALID.replace("http://127.0.0.1:8081", "http://user:secret@127.0.0.1:8081"))).toBe(
      "backends[1].url: must not carry credentials; use api_key_env",
    );
  });

  it("resolves api_key_env from the environment it is given", () => {
    const yaml = VALID.replace("model: llama-3", "api_key_env: UPSTREAM_KEY");
    expect(
      (parse(yaml, { UPSTREAM_KEY: "sk-test" }).backends[1]?.options as HttpBackendOptions).targets[0]?.apiKey,
    ).toBe("sk-test");
    expect(problem(yaml)).toBe("backends[1].api_key_env: environment variable UPSTREAM_KEY is not set");
  });

  it("rejects an empty document, a missing backend list and bad names", () => {
    expect(problem("")).toBe("the file is empty");
    expect(problem("default_backend: a\n")).toBe("backends: must be a non-empty list");
    expect(problem(VALID.replace("name: local", 'name: "has space"'))).toMatch(
      /^backends\[0\]\.name: must be 1-64 characters/,
    );
    expect(problem("default_backend: a\nbackends: [1]\n")).toBe("backends[0]: must be a mapping");
  });

  it("accepts up to MAX_BACKENDS (256) backends and refuses more: a /metrics scrape grows with each", () => {
    const echoes = (count: number) =>
      `default_backend: b0\nbackends:\n${Array.from({ length: count }, (_, i) => `  - {name: b${i}, type: echo}\n`).join("")}`;
    expect(MAX_BACKENDS).toBe(256);
    expect(parse(echoes(256)).backends).toHaveLength(256);
    expect(problem(echoes(257))).toBe(
      "backends: at most 256 backends (have 257): each adds about 75 series to /metrics",
    );
  });
});

const WITH_FALLBACK = `
default_backend: local
backends:
  - name: local
    type: echo
  - name: remote
    type: http
    url: http://127.0.0.1:8081
    retries: 2
    fallbacks: [backup, local]
    circuit_breaker:
      failures: 3
      cooldown: 0.5
  - name: backup
    type: http
    url: http://127.0.0.1:8082
`;

describe("parseConfig: retries, fallbacks and circuit breaker", () => {
  it("reads them for any backend type, next to the type's own fields", () => {
    const [local, remote] = parse(WITH_FALLBACK).backends;
    expect(remote?.resilience).toEqual({
      retries: 2,
      fallbacks: ["backup", "local"],
      circuitBreaker: { failures: 3, cooldownSeconds: 0.5 },
    });
    expect((remote?.options as HttpBackendOptions).targets[0]?.origin).toBe("http://127.0.0.1:8081");
    expect(local?.resilience.fallbacks).toEqual([]);
  });

  it("defaults to no retries, no fallbacks, and a breaker that opens after 5 failures for 10 s", () => {
    expect(parse(VALID).backends[1]?.resilience).toEqual({
      retries: 0,
      fallbacks: [],
      circuitBreaker: { failures: 5, cooldownSeconds: 10 },
    });
  });

  it("turns the breaker off with circuit_breaker: false, and fills in what a mapping leaves out", () => {
    expect(
      parse(VALID.replace("model: llama-3", "circuit_breaker: false")).backends[1]?.resilience.circuitBreaker,
    ).toBeUndefined();
    expect(
      parse(VALID.replace("model: llama-3", "circuit_breaker: {failures: 2}")).backends[1]?.resilience.circuitBreaker,
    ).toEqual({ failures: 2, cooldownSeconds: 10 });
  });

  it.each([
    ["retries: -1", "backends[1].retries: must be a whole number from 0 to 5"],
    ["retries: 1.5", "backends[1].retries: must be a whole number from 0 to 5"],
    ["retries: 6", "backends[1].retries: must be a whole number from 0 to 5"],
    ["fallbacks: local", "backends[1].fallbacks: must be a list"],
    ["fallbacks: [local, 3]", "backends[1].fallbacks[1]: must be a non-empty string"],
    ["fallbacks: [nowhere]", "backends[1].fallbacks[0]: 'nowhere' is not the name of a backend (have: local, remote)"],
    ["fallbacks: [remote]", "backends[1].fallbacks[0]: a backend cannot be its own fallback"],
    ["fallbacks: [local, local]", "backends[1].fallbacks[1]: 'local' is listed twice"],
    ["circuit_breaker: 5", "backends[1].circuit_breaker: must be false or a mapping with failures and cooldown"],
    ["circuit_breaker: {failures: 0}", "backends[1].circuit_breaker.failures: must be a whole number from 1 to 1000"],
    [
      "circuit_breaker: {cooldown: 0}",
      "backends[1].circuit_breaker.cooldown: must be a number greater than 0 and at most 3600",
    ],
    ["circuit_breaker: {failure: 3}", "backends[1].circuit_breaker.failure: is not a known setting"],
  ])("rejects %p with its key path", (line, message) => {
    expect(problem(VALID.replace("model: llama-3", line))).toBe(message);
  });

  it("accepts mutual fallbacks: only the routed backend's own list is followed", () => {
    const yaml = WITH_FALLBACK.replace(
      "    url: http://127.0.0.1:8082\n",
      "    url: http://127.0.0.1:8082\n    fallbacks: [remote]\n",
    );
    expect(parse(yaml).backends[2]?.resilience.fallbacks).toEqual(["remote"]);
  });
});

describe("parseConfig: http timeouts", () => {
  it("keeps idle_timeout an http setting", () => {
    expect(problem(VALID.replace("    type: echo\n", "    type: echo\n    idle_timeout: 2\n"))).toBe(
      "backends[0].idle_timeout: is not a known setting",
    );
  });
});

describe("loadConfigFile", () => {
  const dir = mkdtempSync(join(tmpdir(), "gateway-config-"));

  function write(name: string, text: string): string {
    const path = join(dir, name);
    writeFileSync(path, text);
    return path;
  }

  it("loads the shipped config files", () => {
    expect(loadConfigFile("config/config.yaml", registry, {}).defaultBackend).toBe("local");
    expect(loadConfigFile("config/compose.yaml", registry, {}).backends.map((b) => b.name)).toEqual([
      "local",
      "remote",
    ]);
  });

  it("prefixes problems with the file name", () => {
    const file = write("bad-url.yaml", VALID.replace("http://127.0.0.1:8081", "localhost:8081"));
    expect(() => loadConfigFile(file, registry, {})).toThrow(`${file}: backends[1].url: must be an http(s) URL`);
  });

  it("reports YAML syntax errors in one line", () => {
    const file = write("syntax.yaml", "default_backend: [unclosed\n");
    expect(() => loadConfigFile(file, registry, {})).toThrow(new RegExp(`^${file}: not valid YAML: [^\\n]+$`));
  });

  it("reports a missing file", () => {
    expect(() => loadConfigFile(join(dir, "absent.yaml"), registry, {})).toThrow(
      /absent\.yaml: cannot read the config file \(no such file\)/,
    );
  });
});

describe("environmentWithDotEnv", () => {
  it("adds .env values under the real environment", () => {
    const dir = mkdtempSync(join(tmpdir(), "gateway-env-"));
    const file = join(dir, ".env");
    writeFileSync(file, "PORT=9999\nLOG_LEVEL=debug\n# comment\nHOST=127.0.0.1\n");
    expect(environmentWithDotEnv({ PORT: "7000" }, file)).toMatchObject({
      PORT: "7000",
      LOG_LEVEL: "debug",
      HOST: "127.0.0.1",
    });
  });

  it("is the plain environment when there is no .env", () => {
    const env = { PORT: "1" };
    expect(environmentWithDotEnv(env, "/nonexistent/.env")).toBe(env);
  });
});

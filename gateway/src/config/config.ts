import type { BackendConfig, BackendRegistry } from "../backends/registry";
import type { CircuitBreakerOptions } from "../balancing/circuit-breaker";
import { DEFAULT_CIRCUIT_BREAKER, DEFAULT_RETRIES, MAX_RETRIES, type ResilienceOptions } from "../services/resilience";
import { type AccessConfig, parseAccess } from "../access/config";
import { ConfigError } from "./errors";
import { ConfigFields } from "./fields";

/** One backend from the YAML: its type's own options, plus the failure handling every type shares. */
export interface ConfiguredBackend extends BackendConfig {
  readonly resilience: ResilienceOptions;
}

/** The parsed YAML config file: which backends exist and where unrouted requests go. */
export interface GatewayConfig {
  readonly defaultBackend: string;
  readonly backends: readonly ConfiguredBackend[];
  /** API keys, per-client limits and the concurrency cap. */
  readonly access: AccessConfig;
  /** The environment variables the config read secrets from (`api_key_env`, `key_env`). */
  readonly secretEnv: readonly string[];
}

/**
 * Each backend adds about 75 series to /metrics, and a scrape formats them all in one event-loop turn: 256
 * keeps a scrape well under 100 ms, where 10,000 took seconds (figures in bench/README.md).
 */
export const MAX_BACKENDS = 256;

/** Backend names become `model` ids, metric labels and log fields: keep them plain. */
const BACKEND_NAME = /^[A-Za-z0-9][A-Za-z0-9._:\/-]{0,63}$/;

/** Checks a YAML document (already parsed to plain values) and returns the typed config. Pure. */
export function parseConfig(
  raw: unknown,
  registry: BackendRegistry,
  env: Readonly<Record<string, string | undefined>>,
): GatewayConfig {
  if (raw === null || raw === undefined) throw new ConfigError("", "the file is empty");
  const root = ConfigFields.from(raw, "");
  // The config reads the environment only for secrets; which variables it read, the permission check needs.
  const secretEnv = new Set<string>();
  const secrets: Readonly<Record<string, string | undefined>> = new Proxy(env, {
    get: (target, name) => {
      if (typeof name !== "string") return undefined;
      secretEnv.add(name);
      return target[name];
    },
  });
  const defaultBackend = root.requiredString("default_backend");
  const list = root.take("backends");
  if (!Array.isArray(list) || list.length === 0) throw new ConfigError("backends", "must be a non-empty list");
  if (list.length > MAX_BACKENDS)
    throw new ConfigError(
      "backends",
      `at most ${MAX_BACKENDS} backends (have ${list.length}): each adds about 75 series to /metrics`,
    );

  const names = new Set<string>();
  const backends = list.map((entry: unknown, index: number): ConfiguredBackend => {
    const fields = ConfigFields.from(entry, `backends[${index}]`);
    const name = fields.requiredString("name");
    if (!BACKEND_NAME.test(name)) {
      throw new ConfigError(
        fields.keyPath("name"),
        "must be 1-64 characters of letters, digits and . _ : / - (starting with a letter or digit)",
      );
    }
    if (names.has(name)) throw new ConfigError(fields.keyPath("name"), `'${name}' is already used by another backend`);
    names.add(name);
    const type = fields.requiredString("type");
    // Read before the type's own fields: registry.parse ends by rejecting every key nobody has read.
    const resilience = parseResilience(fields);
    return { ...registry.parse(name, type, fields, secrets), resilience };
  });

  backends.forEach((backend, index) => checkFallbacks(backend, `backends[${index}].fallbacks`, names));
  if (!names.has(defaultBackend)) {
    throw new ConfigError(
      "default_backend",
      `'${defaultBackend}' is not the name of a backend (have: ${[...names].join(", ")})`,
    );
  }
  const access = parseAccess(root, names, secrets);
  root.finish();
  return { defaultBackend, backends, access, secretEnv: [...secretEnv] };
}

/** `retries`, `fallbacks` and `circuit_breaker`: the same keys, and meaning, for every backend type. */
function parseResilience(fields: ConfigFields): ResilienceOptions {
  return {
    retries: fields.integer("retries", DEFAULT_RETRIES, { min: 0, max: MAX_RETRIES }),
    fallbacks: fields.stringList("fallbacks"),
    circuitBreaker: parseCircuitBreaker(fields),
  };
}

/** `circuit_breaker: false` turns it off; a mapping sets `failures` and `cooldown`; absent means the defaults. */
function parseCircuitBreaker(fields: ConfigFields): CircuitBreakerOptions | undefined {
  const raw = fields.take("circuit_breaker");
  if (raw === undefined || raw === null || raw === true) return DEFAULT_CIRCUIT_BREAKER;
  if (raw === false) return undefined;
  const path = fields.keyPath("circuit_breaker");
  if (typeof raw !== "object" || Array.isArray(raw))
    throw new ConfigError(path, "must be false or a mapping with failures and cooldown");
  const breaker = ConfigFields.from(raw, path);
  const options = {
    failures: breaker.integer("failures", DEFAULT_CIRCUIT_BREAKER.failures, { min: 1, max: 1000 }),
    cooldownSeconds: breaker.number("cooldown", DEFAULT_CIRCUIT_BREAKER.cooldownSeconds, {
      min: 0,
      max: 3600,
      exclusiveMin: true,
    }),
  };
  breaker.finish();
  return options;
}

/**
 * Each fallback must be another configured backend, listed once. Only the routed backend's own list is
 * followed (a fallback's fallbacks are not), so a request visits each backend at most once and mutual
 * fallbacks (a -> b, b -> a) are fine.
 */
function checkFallbacks(backend: ConfiguredBackend, path: string, names: ReadonlySet<string>): void {
  const seen = new Set<string>();
  backend.resilience.fallbacks.forEach((name, index) => {
    const at = `${path}[${index}]`;
    if (name === backend.name) throw new ConfigError(at, "a backend cannot be its own fallback");
    if (!names.has(name))
      throw new ConfigError(at, `'${name}' is not the name of a backend (have: ${[...names].join(", ")})`);
    if (seen.has(name)) throw new ConfigError(at, `'${name}' is listed twice`);
    seen.add(name);
  });
}

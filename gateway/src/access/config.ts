import { createHash } from "node:crypto";
import { ConfigError } from "../config/errors";
import { ConfigFields } from "../config/fields";

/** Per-client limits: for each API key, or for each client address when auth is off. Absent = no limit. */
export interface ClientLimits {
  readonly requestsPerMinute?: number;
  readonly tokensPerMinute?: number;
  /** Requests of one client in flight at once. */
  readonly concurrentRequests?: number;
}

/** One gateway API key. Only the SHA-256 of the key is ever held, from the YAML or hashed at load. */
export interface ApiKeyConfig {
  readonly name: string;
  readonly sha256: Buffer;
  /** The backends this key may be routed to; undefined = every backend. */
  readonly backends?: readonly string[];
  readonly limits: ClientLimits;
}

/** Who may call the gateway, and how much. */
export interface AccessConfig {
  /** Empty: auth is off, and limits apply per client address. */
  readonly keys: readonly ApiKeyConfig[];
  /** When set, `/metrics` needs `Authorization: Bearer <this key>`. */
  readonly metricsKey?: Buffer;
  /** The default limits of every client; a key's own `limits` replace them. */
  readonly limits: ClientLimits;
  /** Requests on the completions path in flight at once in this process, over all clients. */
  readonly maxConcurrentRequests: number;
  /** Whether some key's hash is written in the config file itself (then the file deserves 0600). */
  readonly hashesInFile: boolean;
}

export const DEFAULT_MAX_CONCURRENT_REQUESTS = 1024;
/** Shorter keys are guessable; 16 characters is already weak, but refusing less catches test values in prod. */
export const MIN_KEY_CHARS = 16;

/** Key names become log fields and metric label values: keep them plain, like backend names. */
const KEY_NAME = /^[A-Za-z0-9][A-Za-z0-9._:\/-]{0,63}$/;
const SHA256_HEX = /^[0-9a-fA-F]{64}$/;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

export function sha256(text: string): Buffer {
  return createHash("sha256").update(text, "utf8").digest();
}

/**
 * `max_concurrent_requests`, `limits` and `auth` from the root of the YAML. `backendNames` checks each
 * key's allowlist; `env` resolves `key_env`.
 */
export function parseAccess(
  root: ConfigFields,
  backendNames: ReadonlySet<string>,
  env: Readonly<Record<string, string | undefined>>,
): AccessConfig {
  const maxConcurrentRequests = root.integer("max_concurrent_requests", DEFAULT_MAX_CONCURRENT_REQUESTS, {
    min: 1,
    max: 1_000_000,
  });
  const limits = root.has("limits")
    ? parseLimits(ConfigFields.from(root.take("limits"), "limits"))
    : (root.take("limits"), {});
  if (!root.has("auth")) {
    root.take("auth");
    return { keys: [], limits, maxConcurrentRequests, hashesInFile: false };
  }
  const auth = ConfigFields.from(root.take("auth"), "auth");
  const list = auth.take("keys");
  if (!Array.isArray(list) || list.length === 0)
    throw new ConfigError("auth.keys", "must be a non-empty list (remove `auth` to turn auth off)");
  const names = new Set<string>();
  const hashes = new Set<string>();
  const keys = list.map((entry: unknown, index: number): ApiKeyConfig => {
    const fields = ConfigFields.from(entry, `auth.keys[${index}]`);
    const name = fields.requiredString("name");
    if (!KEY_NAME.test(name)) {
      throw new ConfigError(
        fields.keyPath("name"),
        "must be 1-64 characters of letters, digits and . _ : / - (starting with a letter or digit)",
      );
    }
    if (names.has(name)) throw new ConfigError(fields.keyPath("name"), `'${name}' is already used by another key`);
    names.add(name);
    const hash = parseSecret(fields, env);
    if (hashes.has(hash.toString("hex"))) throw new ConfigError(fields.path, "the same key is configured twice");
    hashes.add(hash.toString("hex"));
    const backends = fields.has("backends") ? fields.stringList("backends") : (fields.take("backends"), undefined);
    backends?.forEach((backend, at) => {
      if (!backendNames.has(backend))
        throw new ConfigError(`${fields.keyPath("backends")}[${at}]`, `'${backend}' is not the name of a backend`);
    });
    if (backends !== undefined && backends.length === 0)
      throw new ConfigError(fields.keyPath("backends"), "must name at least one backend");
    const own = fields.has("limits")
      ? parseLimits(ConfigFields.from(fields.take("limits"), fields.keyPath("limits")))
      : (fields.take("limits"), limits);
    fields.finish();
    return { name, sha256: hash, ...(backends === undefined ? {} : { backends }), limits: own };
  });
  const metricsKey = auth.has("metrics_key")
    ? parseSecret(ConfigFields.from(auth.take("metrics_key"), "auth.metrics_key"), env, true)
    : (auth.take("metrics_key"), undefined);
  if (metricsKey !== undefined && hashes.has(metricsKey.toString("hex"))) {
    throw new ConfigError(
      "auth.metrics_key",
      "must differ from every API key: whoever scrapes metrics should not be able to spend",
    );
  }
  auth.finish();
  const entries: readonly unknown[] = list;
  const hashesInFile = [...entries, auth.take("metrics_key")].some(
    (entry) =>
      typeof entry === "object" && entry !== null && typeof (entry as Record<string, unknown>).sha256 === "string",
  );
  return { keys, limits, maxConcurrentRequests, hashesInFile, ...(metricsKey === undefined ? {} : { metricsKey }) };
}

/** `sha256: <hex>` or `key_env: NAME`, exactly one; the plain key itself never sits in the YAML. */
function parseSecret(fields: ConfigFields, env: Readonly<Record<string, string | undefined>>, finish = false): Buffer {
  const hex = fields.optionalString("sha256");
  const envName = fields.optionalString("key_env");
  if (fields.has("key"))
    throw new ConfigError(fields.keyPath("key"), "plain keys do not belong in the config file: use sha256 or key_env");
  if ((hex === undefined) === (envName === undefined))
    throw new ConfigError(fields.path, "needs exactly one of sha256 and key_env");
  let hash: Buffer;
  if (hex !== undefined) {
    if (!SHA256_HEX.test(hex))
      throw new ConfigError(fields.keyPath("sha256"), "must be 64 hex digits (sha256sum of the key)");
    hash = Buffer.from(hex, "hex");
  } else {
    const name = envName ?? "";
    if (!ENV_NAME.test(name)) throw new ConfigError(fields.keyPath("key_env"), "must be an environment variable name");
    const key = env[name];
    if (key === undefined || key === "")
      throw new ConfigError(fields.keyPath("key_env"), `environment variable ${name} is not set`);
    if (key.length < MIN_KEY_CHARS)
      throw new ConfigError(
        fields.keyPath("key_env"),
        `the key in ${name} must be at least ${MIN_KEY_CHARS} characters`,
      );
    if (/\s/.test(key))
      throw new ConfigError(fields.keyPath("key_env"), `the key in ${name} must not contain whitespace`);
    hash = sha256(key);
  }
  if (finish) fields.finish();
  return hash;
}

function parseLimits(fields: ConfigFields): ClientLimits {
  const optional = (key: string, max: number): number | undefined =>
    fields.has(key) ? fields.integer(key, 0, { min: 1, max }) : (fields.take(key), undefined);
  const requestsPerMinute = optional("requests_per_minute", 10_000_000);
  const tokensPerMinute = optional("tokens_per_minute", 1_000_000_000_000);
  const concurrentRequests = optional("concurrent_requests", 1_000_000);
  fields.finish();
  return {
    ...(requestsPerMinute === undefined ? {} : { requestsPerMinute }),
    ...(tokensPerMinute === undefined ? {} : { tokensPerMinute }),
    ...(concurrentRequests === undefined ? {} : { concurrentRequests }),
  };
}

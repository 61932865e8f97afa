import { createHash } from "node:crypto";
import { ConfigError } from "../config/errors";
import { ConfigFields, ENV_NAME } from "../config/fields";

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
  /** Where every process and replica counts the clients' limits together (`limits_store`); absent: in-process. */
  readonly store?: LimitsStoreConfig;
}

/** What a process does with a limited request when the store cannot answer (see limits-store.ts). */
export type StoreFailureMode = "local" | "open" | "closed";

/** `limits_store`: a Valkey or Redis server shared by every worker and replica. */
export interface LimitsStoreConfig {
  readonly host: string;
  readonly port: number;
  readonly db: number;
  readonly username?: string;
  /** From `password_env`; never written in the file, never logged. */
  readonly password?: string;
  /** `rediss://`. */
  readonly tls: boolean;
  /** The URL for logs: no credentials in it. */
  readonly display: string;
  readonly onStoreFailure: StoreFailureMode;
  /** Replicas sharing the store: under `local`, each process enforces limit / (replicas x workers). */
  readonly expectedReplicas: number;
  /** The longest a request waits on the store, in milliseconds. */
  readonly timeoutMs: number;
  /** A request's lease on its client's concurrency: renewed while it runs, so a crashed process's come back. */
  readonly leaseSeconds: number;
  readonly keyPrefix: string;
}

export const DEFAULT_STORE_TIMEOUT_MS = 50;
export const DEFAULT_LEASE_SECONDS = 30;
const STORE_FAILURE_MODES: readonly StoreFailureMode[] = ["local", "open", "closed"];

export const DEFAULT_MAX_CONCURRENT_REQUESTS = 1024;
/** Shorter keys are guessable; 16 characters is already weak, but refusing less catches test values in prod. */
export const MIN_KEY_CHARS = 16;

/** Key names become log fields and metric label values: keep them plain, like backend names. */
const KEY_NAME = /^[A-Za-z0-9][A-Za-z0-9._:\/-]{0,63}$/;
const SHA256_HEX = /^[0-9a-fA-F]{64}$/;

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
  const store = root.has("limits_store")
    ? { store: parseLimitsStore(ConfigFields.from(root.take("limits_store"), "limits_store"), env) }
    : (root.take("limits_store"), {});
  if (!root.has("auth")) {
    root.take("auth");
    return { keys: [], limits, maxConcurrentRequests, hashesInFile: false, ...store };
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
  return {
    keys,
    limits,
    maxConcurrentRequests,
    hashesInFile,
    ...(metricsKey === undefined ? {} : { metricsKey }),
    ...store,
  };
}

/**
 * `limits_store: {url, password_env, on_store_failure, expected_replicas, timeout_ms, lease_seconds, key_prefix}`.
 * The URL is `redis://` or `rediss://` (TLS), host and port, optionally a user and a database number; a
 * password in it is refused (it would sit in the file and in every log line naming the store).
 */
function parseLimitsStore(fields: ConfigFields, env: Readonly<Record<string, string | undefined>>): LimitsStoreConfig {
  const raw = fields.requiredString("url");
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ConfigError(fields.keyPath("url"), "must be a URL such as redis://valkey:6379");
  }
  if (url.protocol !== "redis:" && url.protocol !== "rediss:")
    throw new ConfigError(fields.keyPath("url"), "must start with redis:// or rediss:// (TLS)");
  if (url.password !== "")
    throw new ConfigError(fields.keyPath("url"), "must not contain a password: name its variable in password_env");
  if (url.hostname === "") throw new ConfigError(fields.keyPath("url"), "must name a host");
  const path = url.pathname === "" || url.pathname === "/" ? "0" : url.pathname.slice(1);
  if (!/^\d{1,2}$/.test(path))
    throw new ConfigError(fields.keyPath("url"), "may end with a database number (such as /0), nothing else");
  if (url.search !== "" || url.hash !== "")
    throw new ConfigError(fields.keyPath("url"), "must not carry a query or fragment: use the keys of limits_store");
  const tls = url.protocol === "rediss:";
  const port = url.port === "" ? 6379 : Number(url.port);
  const host = url.hostname.replace(/^\[|\]$/g, "");
  const password = fields.secretFromEnv("password_env", env);
  const mode = fields.optionalString("on_store_failure") ?? "local";
  const onStoreFailure = STORE_FAILURE_MODES.find((known) => known === mode);
  if (onStoreFailure === undefined)
    throw new ConfigError(fields.keyPath("on_store_failure"), `must be one of ${STORE_FAILURE_MODES.join(", ")}`);
  const expectedReplicas = fields.integer("expected_replicas", 1, { min: 1, max: 10_000 });
  const timeoutMs = fields.integer("timeout_ms", DEFAULT_STORE_TIMEOUT_MS, { min: 1, max: 10_000 });
  const leaseSeconds = fields.integer("lease_seconds", DEFAULT_LEASE_SECONDS, { min: 3, max: 3600 });
  const keyPrefix = fields.optionalString("key_prefix") ?? "gateway:";
  if (/[{}\s]/.test(keyPrefix))
    throw new ConfigError(
      fields.keyPath("key_prefix"),
      "must not contain braces or whitespace (keys carry a {hash tag})",
    );
  fields.finish();
  const username = url.username === "" ? undefined : decodeURIComponent(url.username);
  return {
    host,
    port,
    db: Number(path),
    tls,
    display: `${url.protocol}//${username === undefined ? "" : `${url.username}@`}${url.host}/${path}`,
    onStoreFailure,
    expectedReplicas,
    timeoutMs,
    leaseSeconds,
    keyPrefix,
    ...(username === undefined ? {} : { username }),
    ...(password === undefined ? {} : { password }),
  };
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

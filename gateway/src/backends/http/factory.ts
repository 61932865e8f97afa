import type { HealthCheckOptions } from "../../balancing/health-checks";
import { type Affinity, type Balance, BALANCES } from "../../balancing/pool";
import { ConfigError } from "../../config/errors";
import { ConfigFields } from "../../config/fields";
import { DEFAULT_MAX_EVENT_BYTES } from "../../utils/sse";
import type { BackendContext, BackendFactory } from "../backend";
import { HttpBackend } from "./backend";
import { MAX_TARGETS } from "./upstreams";

/** One configured upstream of an http backend (`url`, or one entry of `targets`). */
export interface HttpTargetOptions {
  /** The `target` label: its `name`, else its index in `targets`. */
  readonly name: string;
  /** As configured, e.g. `http://vllm:8000/v1`: its host is what discovery resolves. */
  readonly url: URL;
  /** Origin for the connection pool, e.g. `http://mock-remote:8081`. */
  readonly origin: string;
  /** Path of the completions endpoint on that origin. */
  readonly path: string;
  /** The API's base path on that origin (`/v1`, or `/proxy/v1`): other endpoints hang off it. */
  readonly basePath: string;
  readonly weight: number;
  /** Resolved from its `api_key_env`, else the backend's; never logged, never put in an error. */
  readonly apiKey?: string;
}

export interface HttpBackendOptions {
  readonly targets: readonly HttpTargetOptions[];
  readonly balance: Balance;
  readonly affinity?: Affinity;
  /** Active checks (`health_check`); undefined: only the breakers judge health. */
  readonly healthCheck?: HealthCheckOptions;
  /** `discovery: dns`: each target's host re-resolved this often (`dns_refresh`), one target per address. */
  readonly dnsRefreshSeconds?: number;
  /** The whole exchange; for a stream, until its first event. Shared by the retries of one request. */
  readonly timeoutSeconds: number;
  readonly connectTimeoutSeconds: number;
  /** Streams: the longest silence allowed between two events once the stream has started. */
  readonly idleTimeoutSeconds: number;
  /** The upstream's own model id, sent instead of the client's. */
  readonly model?: string;
  /** Streams: the largest one event may be (`max_event_bytes`); a larger one fails the stream. */
  readonly maxEventBytes: number;
  /** The largest answer buffered whole (`max_response_bytes`): a non-streamed one, or a non-SSE answer to a stream. */
  readonly maxResponseBytes: number;
}

/** Bounds for the byte-size settings: below 1 KiB no real answer fits, above 1 GiB no process has the memory. */
const BYTE_SETTING_RANGE = { min: 1024, max: 1024 * 1024 * 1024 };

/** The default `max_response_bytes`: answers larger than this are refused rather than buffered. */
const DEFAULT_MAX_RESPONSE_BYTES = 32 * 1024 * 1024;

/** Target names are `target` label values: plain, like backend names (discovered ones are `address:port`). */
const TARGET_NAME = /^[A-Za-z0-9][A-Za-z0-9._:\/-]{0,63}$/;

/** `{url}/v1`; a base URL that already ends in `/v1` (as OpenAI's does) is not doubled. */
export function apiBasePath(url: URL): string {
  const base = url.pathname.replace(/\/+$/, "");
  return base.endsWith("/v1") ? base : `${base}/v1`;
}

/** `{url}/v1/chat/completions`, as apiBasePath builds the base. */
export function completionsPath(url: URL): string {
  return `${apiBasePath(url)}/chat/completions`;
}

export const httpBackendFactory: BackendFactory<HttpBackendOptions> = {
  type: "http",

  parseOptions(fields: ConfigFields, env: BackendContext["env"]): HttpBackendOptions {
    const apiKey = fields.secretFromEnv("api_key_env", env);
    const targets = parseTargets(fields, env, apiKey);
    const balance = fields.choice("balance", BALANCES, "least_outstanding");
    const affinity = parseAffinity(fields);
    const healthCheck = parseHealthCheck(fields);
    const discovery = fields.choice("discovery", ["none", "dns"] as const, "none");
    const dnsRefreshSeconds = fields.number("dns_refresh", 10, { min: 1, max: 3600 });
    if (discovery === "none" && fields.has("dns_refresh"))
      throw new ConfigError(fields.keyPath("dns_refresh"), "needs discovery: dns");
    const timeoutSeconds = fields.number("timeout", 60, { min: 0, max: 3600, exclusiveMin: true });
    const connectTimeoutSeconds = fields.number("connect_timeout", Math.min(10, timeoutSeconds), {
      min: 0,
      max: 3600,
      exclusiveMin: true,
    });
    const idleTimeoutSeconds = fields.number("idle_timeout", timeoutSeconds, { min: 0, max: 3600, exclusiveMin: true });
    const model = fields.optionalString("model");
    const maxEventBytes = fields.integer("max_event_bytes", DEFAULT_MAX_EVENT_BYTES, BYTE_SETTING_RANGE);
    const maxResponseBytes = fields.integer("max_response_bytes", DEFAULT_MAX_RESPONSE_BYTES, BYTE_SETTING_RANGE);
    return {
      targets,
      balance,
      ...(affinity === undefined ? {} : { affinity }),
      ...(healthCheck === undefined ? {} : { healthCheck }),
      ...(discovery === "dns" ? { dnsRefreshSeconds } : {}),
      timeoutSeconds,
      connectTimeoutSeconds,
      idleTimeoutSeconds,
      maxEventBytes,
      maxResponseBytes,
      ...(model === undefined ? {} : { model }),
    };
  },

  create: (name, options, context) => new HttpBackend(name, options, context),
};

/** `url` (one target) or `targets: [{url, name, weight, api_key_env}]`, not both. */
function parseTargets(
  fields: ConfigFields,
  env: BackendContext["env"],
  backendKey: string | undefined,
): HttpTargetOptions[] {
  if (fields.has("url") && fields.has("targets"))
    throw new ConfigError(fields.keyPath("targets"), "give either url (one target) or targets, not both");
  if (!fields.has("targets")) {
    fields.take("targets");
    return [target("0", fields.httpUrl("url"), 1, backendKey)];
  }
  fields.take("url");
  const list = fields.take("targets");
  const path = fields.keyPath("targets");
  if (!Array.isArray(list) || list.length === 0) throw new ConfigError(path, "must be a non-empty list");
  if (list.length > MAX_TARGETS) throw new ConfigError(path, `at most ${MAX_TARGETS} targets`);
  const names = new Set<string>();
  return list.map((entry: unknown, index) => {
    const item = ConfigFields.from(entry, `${path}[${index}]`);
    const url = item.httpUrl("url");
    const name = item.optionalString("name") ?? String(index);
    if (!TARGET_NAME.test(name))
      throw new ConfigError(item.keyPath("name"), "must be 1-64 characters of letters, digits and . _ : / -");
    if (names.has(name)) throw new ConfigError(item.keyPath("name"), `'${name}' is already used by another target`);
    names.add(name);
    const weight = item.number("weight", 1, { min: 0, max: 1000, exclusiveMin: true });
    const apiKey = item.secretFromEnv("api_key_env", env) ?? backendKey;
    item.finish();
    return target(name, url, weight, apiKey);
  });
}

function target(name: string, url: URL, weight: number, apiKey: string | undefined): HttpTargetOptions {
  return {
    name,
    url,
    origin: url.origin,
    path: completionsPath(url),
    basePath: apiBasePath(url),
    weight,
    ...(apiKey === undefined ? {} : { apiKey }),
  };
}

/** `affinity: {header: x-session-id}` or `affinity: {body: user}`. */
function parseAffinity(fields: ConfigFields): Affinity | undefined {
  const affinity = fields.optionalMapping("affinity");
  if (affinity === undefined) return undefined;
  const header = affinity.optionalString("header");
  const body = affinity.optionalString("body");
  affinity.finish();
  if (header !== undefined && body === undefined) {
    if (!/^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/.test(header))
      throw new ConfigError(affinity.keyPath("header"), "must be an HTTP header name");
    return { header: header.toLowerCase() };
  }
  if (body === "user" && header === undefined) return { user: true };
  throw new ConfigError(affinity.path, "must be {header: NAME} or {body: user}");
}

/** `health_check: {path: /health, interval: 5, timeout: 2}`; absent: no active checks. */
function parseHealthCheck(fields: ConfigFields): HealthCheckOptions | undefined {
  const check = fields.optionalMapping("health_check");
  if (check === undefined) return undefined;
  const path = check.optionalString("path") ?? "/health";
  if (!path.startsWith("/") || /[\s?#]/.test(path))
    throw new ConfigError(check.keyPath("path"), "must be a path starting with / (no query)");
  const intervalSeconds = check.number("interval", 5, { min: 0.1, max: 3600 });
  const timeoutSeconds = check.number("timeout", Math.min(2, intervalSeconds), {
    min: 0,
    max: 3600,
    exclusiveMin: true,
  });
  check.finish();
  if (timeoutSeconds > intervalSeconds)
    throw new ConfigError(check.keyPath("timeout"), "must not be longer than the interval");
  return { path, intervalSeconds, timeoutSeconds };
}

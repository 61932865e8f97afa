import { Counter, Gauge, type Registry } from "prom-client";
import type { RejectReason } from "./admission";

/** The `key` label of requests that carry no known key: auth is off, or the key was missing or wrong. */
export const NO_KEY = "none";

/** Why a request was refused before it reached a backend: auth, allowlist, limits. A closed set. */
export type RejectionReason = RejectReason | "missing_api_key" | "invalid_api_key" | "model_not_allowed";

/**
 * Who uses the gateway, apart from which backend answered: requests and tokens per API key, and what the
 * access rules refused. A separate family rather than a `key` label on gateway_requests_total, so that
 * turning auth on or off never changes the shape of the series dashboards already query. The `key` label
 * is only ever a configured key's name or NO_KEY, so the number of series stays bounded.
 */
export interface AccessMetrics {
  /** A completions request of `key` ended with `status` (auth on only). */
  requestEnded(key: string, status: number): void;
  tokensUsed(key: string, tokens: number): void;
  rejected(key: string, reason: RejectionReason): void;
  /** A reloaded config's keys: new ones get their series at 0; with none, auth is off and nothing is counted. */
  setKeys(keyNames: readonly string[]): void;
}

export function createAccessMetrics(
  registry: Registry,
  keyNames: readonly string[],
  requestsInFlight: () => number,
): AccessMetrics {
  const registers = [registry];
  const requests = new Counter({
    name: "gateway_key_requests_total",
    help: "Chat completion requests per gateway API key (by its configured name) and HTTP status; only when auth is on.",
    labelNames: ["key", "code"] as const,
    registers,
  });
  const tokens = new Counter({
    name: "gateway_key_tokens_total",
    help: "Tokens (prompt + completion) charged to each gateway API key; only when auth is on.",
    labelNames: ["key"] as const,
    registers,
  });
  const rejections = new Counter({
    name: "gateway_rejected_requests_total",
    help: "Requests refused by the access rules before reaching a backend, by API key name ('none' without one) and reason.",
    labelNames: ["key", "reason"] as const,
    registers,
  });
  new Gauge({
    name: "gateway_admitted_requests_in_flight",
    help: "Chat completion requests admitted and not yet over, over all clients (compare with max_concurrent_requests).",
    registers,
    collect() {
      this.set(requestsInFlight());
    },
  });
  let enabled = false;
  const setKeys = (names: readonly string[]) => {
    // At 0 from the start, so the first request of a key is a visible increase to rate().
    for (const key of names) {
      requests.labels(key, "200").inc(0);
      tokens.labels(key).inc(0);
    }
    enabled = names.length > 0;
  };
  setKeys(keyNames);
  return {
    setKeys,
    requestEnded: (key, status) => {
      if (enabled) requests.labels(key, String(status)).inc();
    },
    tokensUsed: (key, used) => {
      if (enabled && used > 0) tokens.labels(key).inc(used);
    },
    rejected: (key, reason) => {
      rejections.labels(key, reason).inc();
    },
  };
}

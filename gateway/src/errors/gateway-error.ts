/**
 * How a backend call failed, when it did: the `reason` label of `gateway_backend_errors_total`. A closed set,
 * and a contract: dashboards and alerts match on these values.
 */
export const BACKEND_FAULTS = [
  "timeout",
  "connection",
  "http_status",
  "invalid_response",
  "stream_interrupted",
] as const;
export type BackendFault = (typeof BACKEND_FAULTS)[number];

/**
 * What a failed call says about the backend, for its circuit breaker: `failure` counts against it, `success`
 * means it did its job (it refused a bad request), `neutral` says nothing either way.
 */
export type BackendHealth = "failure" | "success" | "neutral";

/**
 * Every failure a client can see is a GatewayError: an HTTP status, an OpenAI error `type`, and a stable
 * `code` that clients and dashboards can match on. The error handler is the only place that turns one into
 * a response body, so the wire shape lives in one spot.
 *
 * What a failure means for the backend (`fault`, `retryable`, `backendHealth`, `fallbackMayHelp`) is decided
 * here too, so the resilience layer and the metrics read the same answers instead of each classifying errors.
 */
export class GatewayError extends Error {
  /** The upstream's `retry-after`, parsed, when it sent one: a retry never comes sooner than this. */
  readonly retryAfterMs?: number;

  constructor(
    message: string,
    readonly status: number,
    readonly type: string,
    readonly code: string | null,
    readonly param: string | null = null,
    /** Extra response headers, such as `retry-after`. */
    readonly headers: Readonly<Record<string, string>> = {},
  ) {
    super(message);
    this.name = new.target.name;
  }

  /** How the backend call failed; undefined when no backend call failed (the client, the gateway, an open circuit). */
  get fault(): BackendFault | undefined {
    return undefined;
  }

  /**
   * Whether sending the same request to the same backend again may succeed. The resilience layer's retry
   * rule reads only this, so which failures are retried is decided here, next to what each failure means.
   */
  get retryable(): boolean {
    return false;
  }

  /** A backend call that failed counts against the backend, unless the subclass knows better. */
  get backendHealth(): BackendHealth {
    return this.fault === undefined ? "neutral" : "failure";
  }

  /** Whether another backend may answer where this one failed: when this one is at fault, unless told otherwise. */
  get fallbackMayHelp(): boolean {
    return this.backendHealth === "failure";
  }
}

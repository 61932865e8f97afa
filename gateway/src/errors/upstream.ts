import { type BackendFault, type BackendHealth, GatewayError } from "./gateway-error";

/** Upstream statuses that say "not now" rather than "never": a later try may well succeed. */
const TRANSIENT_UPSTREAM_STATUSES: ReadonlySet<number> = new Set([502, 503, 504]);

/** The upstream answered with a status we pass on as a client error (its 4xx, other than auth problems). */
export class UpstreamClientError extends GatewayError {
  constructor(
    backend: string,
    readonly upstreamStatus: number,
    upstreamMessage: string,
    headers: Record<string, string> = {},
    override readonly retryAfterMs?: number,
  ) {
    super(
      `Backend '${backend}' rejected the request: ${upstreamMessage}`,
      upstreamStatus,
      upstreamStatus === 429 ? "rate_limit_error" : "invalid_request_error",
      "upstream_client_error",
      null,
      headers,
    );
  }

  /**
   * A rate limit passes, unless the upstream said otherwise (`x-should-retry: false`, as for an exhausted
   * quota); any other 4xx describes the request itself, which another try would repeat.
   */
  override get retryable(): boolean {
    return this.upstreamStatus === 429 && this.headers["x-should-retry"] !== "false";
  }

  override get fault(): BackendFault {
    return "http_status";
  }

  /**
   * A 429 is a backend that works but is busy: neither healthy nor broken. Any other 4xx describes the
   * request itself: the backend did its job.
   */
  override get backendHealth(): BackendHealth {
    return this.upstreamStatus === 429 ? "neutral" : "success";
  }

  /** Another backend may have room where this one is busy; a request it refused, another would refuse too. */
  override get fallbackMayHelp(): boolean {
    return this.upstreamStatus === 429;
  }
}

/** The upstream answered with an error status that is the gateway's or upstream's fault, not the client's. */
export class UpstreamHttpError extends GatewayError {
  constructor(
    backend: string,
    readonly upstreamStatus: number,
    upstreamMessage: string,
    /** Sent with 503s. */
    override readonly retryAfterMs?: number,
  ) {
    super(
      `Backend '${backend}' answered HTTP ${upstreamStatus}: ${upstreamMessage}`,
      502,
      "upstream_error",
      "upstream_http_error",
    );
  }

  /** 502/503/504 are overload or a hop in front of the model failing; a 500 is more often a bug that repeats. */
  override get retryable(): boolean {
    return TRANSIENT_UPSTREAM_STATUSES.has(this.upstreamStatus);
  }

  override get fault(): BackendFault {
    return "http_status";
  }
}

export class UpstreamUnreachableError extends GatewayError {
  constructor(backend: string, cause: string) {
    super(`Backend '${backend}' could not be reached: ${cause}`, 502, "upstream_error", "upstream_unreachable");
  }

  /** Refused, reset or not connected in time: nothing was answered, so another connection may well work. */
  override get retryable(): boolean {
    return true;
  }

  override get fault(): BackendFault {
    return "connection";
  }
}

export class UpstreamInvalidResponseError extends GatewayError {
  constructor(backend: string, why: string) {
    super(`Backend '${backend}' sent an invalid response: ${why}`, 502, "upstream_error", "upstream_invalid_response");
  }

  override get fault(): BackendFault {
    return "invalid_response";
  }
}

/**
 * A streamed answer that broke: ended without `[DONE]`, or the upstream sent an error event. Before the
 * first event as after it, that is an interrupted stream.
 */
export class UpstreamStreamError extends GatewayError {
  constructor(backend: string, why: string) {
    super(`Backend '${backend}' broke off its stream: ${why}`, 502, "upstream_error", "upstream_stream_error");
  }

  override get fault(): BackendFault {
    return "stream_interrupted";
  }
}

export class UpstreamTimeoutError extends GatewayError {
  constructor(backend: string, timeoutSeconds: number, what = "did not answer") {
    super(`Backend '${backend}' ${what} within ${timeoutSeconds} s.`, 504, "upstream_error", "upstream_timeout");
  }

  override get fault(): BackendFault {
    return "timeout";
  }
}

/**
 * No target of the backend may take a request: their circuit breakers are open (they failed too often lately,
 * so the gateway answers at once instead of adding load), or none is in rotation for another reason (`resting`
 * false: failed health checks, or a name that does not resolve yet). `retry-after` says when to try again.
 */
export class CircuitOpenError extends GatewayError {
  constructor(
    readonly backend: string,
    readonly retryAfterSeconds: number,
    resting = true,
  ) {
    super(
      resting
        ? `Backend '${backend}' failed repeatedly and is resting; try again in ${retryAfterSeconds} s.`
        : `Backend '${backend}' has no target in rotation (failing health checks, or a name that does not resolve yet); try again in ${retryAfterSeconds} s.`,
      503,
      "upstream_error",
      "backend_unavailable",
      null,
      { "retry-after": String(retryAfterSeconds) },
    );
  }

  /** No call was made, so nothing counts against the backend; another backend may well be up. */
  override get fallbackMayHelp(): boolean {
    return true;
  }
}

/**
 * Upstream answers already buffered in this process fill `MAX_BUFFERED_BYTES`: the gateway is busy, the
 * backend did nothing wrong (it is not counted against it, retried or sent to a fallback).
 */
export class ResponseBudgetExhaustedError extends GatewayError {
  constructor(limitBytes: number) {
    super(
      `The gateway is buffering too many large answers (limit ${limitBytes} bytes); try again in a moment.`,
      503,
      "server_error",
      "response_budget_exhausted",
      null,
      {
        "retry-after": "1",
      },
    );
  }
}

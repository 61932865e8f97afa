/**
 * Every failure a client can see is a GatewayError: an HTTP status, an OpenAI error `type`, and a stable
 * `code` that clients and dashboards can match on. The error handler is the only place that turns one into
 * a response body, so the wire shape lives in one spot.
 */
export class GatewayError extends Error {
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

  /**
   * Whether sending the same request to the same backend again may succeed. The resilience layer's retry
   * rule reads only this, so which failures are retried is decided here, next to what each failure means.
   */
  get retryable(): boolean {
    return false;
  }
}

export class InvalidRequestError extends GatewayError {
  constructor(message: string, param: string | null = null, code: string | null = "invalid_value") {
    super(message, 400, "invalid_request_error", code, param);
  }
}

export class PayloadTooLargeError extends GatewayError {
  constructor(limitBytes: number) {
    super(`Request body is larger than the limit of ${limitBytes} bytes.`, 413, "invalid_request_error", "payload_too_large");
  }
}

export class NotFoundError extends GatewayError {
  constructor(method: string, path: string) {
    super(`Unknown route: ${method} ${path}`, 404, "invalid_request_error", "unknown_url");
  }
}

export class MethodNotAllowedError extends GatewayError {
  constructor(method: string, path: string, allowed: readonly string[]) {
    super(`Method ${method} is not allowed on ${path}; use ${allowed.join(", ")}.`, 405, "invalid_request_error", "method_not_allowed", null, {
      allow: allowed.join(", "),
    });
  }
}

/** Upstream statuses that say "not now" rather than "never": a later try may well succeed. */
const TRANSIENT_UPSTREAM_STATUSES: ReadonlySet<number> = new Set([502, 503, 504]);

/** The upstream answered with a status we pass on as a client error (its 4xx, other than auth problems). */
export class UpstreamClientError extends GatewayError {
  constructor(
    backend: string,
    readonly upstreamStatus: number,
    upstreamMessage: string,
    headers: Record<string, string> = {},
    /** The upstream's `retry-after`, parsed; a retry never comes sooner than this. */
    readonly retryAfterMs?: number,
  ) {
    super(`Backend '${backend}' rejected the request: ${upstreamMessage}`, upstreamStatus, upstreamStatus === 429 ? "rate_limit_error" : "invalid_request_error", "upstream_client_error", null, headers);
  }

  /**
   * A rate limit passes, unless the upstream said otherwise (`x-should-retry: false`, as for an exhausted
   * quota); any other 4xx describes the request itself, which another try would repeat.
   */
  override get retryable(): boolean {
    return this.upstreamStatus === 429 && this.headers["x-should-retry"] !== "false";
  }
}

/** The upstream answered with an error status that is the gateway's or upstream's fault, not the client's. */
export class UpstreamHttpError extends GatewayError {
  constructor(
    backend: string,
    readonly upstreamStatus: number,
    upstreamMessage: string,
    /** The upstream's `retry-after` (sent with 503s), parsed. */
    readonly retryAfterMs?: number,
  ) {
    super(`Backend '${backend}' answered HTTP ${upstreamStatus}: ${upstreamMessage}`, 502, "upstream_error", "upstream_http_error");
  }

  /** 502/503/504 are overload or a hop in front of the model failing; a 500 is more often a bug that repeats. */
  override get retryable(): boolean {
    return TRANSIENT_UPSTREAM_STATUSES.has(this.upstreamStatus);
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
}

export class UpstreamInvalidResponseError extends GatewayError {
  constructor(backend: string, why: string) {
    super(`Backend '${backend}' sent an invalid response: ${why}`, 502, "upstream_error", "upstream_invalid_response");
  }
}

/** A streamed answer that broke: ended without `[DONE]`, or the upstream sent an error event. */
export class UpstreamStreamError extends GatewayError {
  constructor(backend: string, why: string) {
    super(`Backend '${backend}' broke off its stream: ${why}`, 502, "upstream_error", "upstream_stream_error");
  }
}

export class UpstreamTimeoutError extends GatewayError {
  constructor(backend: string, timeoutSeconds: number, what = "did not answer") {
    super(`Backend '${backend}' ${what} within ${timeoutSeconds} s.`, 504, "upstream_error", "upstream_timeout");
  }
}

/**
 * The backend's circuit breaker is open: it failed too often lately, so the gateway answers at once instead
 * of adding load to it. `retry-after` says when it lets a trial request through again.
 */
export class CircuitOpenError extends GatewayError {
  constructor(
    readonly backend: string,
    readonly retryAfterSeconds: number,
  ) {
    super(
      `Backend '${backend}' failed repeatedly and is resting; try again in ${retryAfterSeconds} s.`,
      503,
      "upstream_error",
      "backend_unavailable",
      null,
      { "retry-after": String(retryAfterSeconds) },
    );
  }
}

/**
 * The request went through more gateways than MAX_HOPS allows (508 Loop Detected): most likely two gateways
 * name each other as backends. Retrying would run the same loop again.
 */
export class LoopDetectedError extends GatewayError {
  constructor(message: string) {
    super(message, 508, "invalid_request_error", "loop_detected");
  }
}

/** No gateway API key, or one the gateway does not know. Never echoes what was sent. */
export class AuthenticationError extends GatewayError {
  constructor(missing: boolean) {
    super(
      missing ? "Missing API key: send it as 'Authorization: Bearer <key>'." : "Incorrect API key provided.",
      401,
      "invalid_request_error",
      missing ? "missing_api_key" : "invalid_api_key",
      null,
      { "www-authenticate": 'Bearer realm="gateway"' },
    );
  }
}

/** The key is valid but may not use the backend the request was routed to. */
export class BackendNotAllowedError extends GatewayError {
  constructor(key: string, backend: string) {
    super(`The API key '${key}' may not use the model '${backend}'.`, 403, "invalid_request_error", "model_not_allowed", "model");
  }
}

/**
 * A client went over its requests or tokens per minute. 429s are retried by the SDKs, and `retry-after`
 * (within 60 s, which a one-minute window always is) tells them when.
 */
export class RateLimitError extends GatewayError {
  constructor(limit: "requests" | "tokens", perMinute: number, who: string, retryAfterSeconds: number) {
    super(`Rate limit reached for ${who}: ${perMinute} ${limit} per minute. Try again in ${retryAfterSeconds} s.`, 429, "rate_limit_error", "rate_limit_exceeded", null, {
      "retry-after": String(retryAfterSeconds),
      [`x-ratelimit-limit-${limit}`]: String(perMinute),
      [`x-ratelimit-remaining-${limit}`]: "0",
    });
  }
}

/** Too many requests in flight, for one client or for the whole gateway: try again in a moment. */
export class TooManyConcurrentRequestsError extends GatewayError {
  constructor(message: string) {
    super(message, 503, "server_error", "too_many_concurrent_requests", null, { "retry-after": "1" });
  }
}

/** The completions path reads JSON only; a form or text body is refused rather than guessed at. */
export class UnsupportedMediaTypeError extends GatewayError {
  constructor(contentType: string) {
    super(`Content-Type must be application/json, not '${contentType.slice(0, 100)}'.`, 415, "invalid_request_error", "unsupported_media_type");
  }
}

/** The request (its headers or its body) did not arrive within the time allowed: a client too slow, or stalled. */
export class RequestTimeoutError extends GatewayError {
  constructor(seconds: number) {
    super(`The request body did not arrive within ${seconds} s.`, 408, "invalid_request_error", "request_timeout", null, { connection: "close" });
  }
}

/** A `Content-Encoding` (or charset) the gateway cannot decode. */
export class UnsupportedEncodingError extends GatewayError {
  constructor(message: string) {
    super(message, 415, "invalid_request_error", "unsupported_encoding");
  }
}

/**
 * Upstream answers already buffered in this process fill `MAX_BUFFERED_BYTES`: the gateway is busy, the
 * backend did nothing wrong (it is not counted against it, retried or sent to a fallback).
 */
export class ResponseBudgetExhaustedError extends GatewayError {
  constructor(limitBytes: number) {
    super(`The gateway is buffering too many large answers (limit ${limitBytes} bytes); try again in a moment.`, 503, "server_error", "response_budget_exhausted", null, {
      "retry-after": "1",
    });
  }
}

export class ServiceUnavailableError extends GatewayError {
  constructor(message: string) {
    super(message, 503, "server_error", "unavailable", null, { "retry-after": "1" });
  }
}

export class InternalError extends GatewayError {
  constructor() {
    super("The gateway hit an internal error.", 500, "server_error", "internal_error");
  }
}

/** The client went away before the answer was ready; 499 as nginx logs it. Nobody reads the body. */
export class ClientClosedError extends GatewayError {
  constructor() {
    super("The client closed the connection.", 499, "invalid_request_error", "client_closed_request");
  }
}

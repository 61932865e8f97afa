import { GatewayError } from "./gateway-error";

export * from "./gateway-error";
export * from "./upstream";

export class InvalidRequestError extends GatewayError {
  constructor(message: string, param: string | null = null, code: string | null = "invalid_value") {
    super(message, 400, "invalid_request_error", code, param);
  }
}

export class PayloadTooLargeError extends GatewayError {
  constructor(limitBytes: number) {
    super(
      `Request body is larger than the limit of ${limitBytes} bytes.`,
      413,
      "invalid_request_error",
      "payload_too_large",
    );
  }
}

export class NotFoundError extends GatewayError {
  constructor(method: string, path: string) {
    super(`Unknown route: ${method} ${path}`, 404, "invalid_request_error", "unknown_url");
  }
}

export class MethodNotAllowedError extends GatewayError {
  constructor(method: string, path: string, allowed: readonly string[]) {
    super(
      `Method ${method} is not allowed on ${path}; use ${allowed.join(", ")}.`,
      405,
      "invalid_request_error",
      "method_not_allowed",
      null,
      {
        allow: allowed.join(", "),
      },
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
    super(
      `The API key '${key}' may not use the model '${backend}'.`,
      403,
      "invalid_request_error",
      "model_not_allowed",
      "model",
    );
  }
}

/** The request's model names a backend whose type does not serve this endpoint (a custom type without embed). */
export class UnsupportedEndpointError extends GatewayError {
  constructor(backend: string, endpoint: string) {
    super(
      `The model '${backend}' does not serve ${endpoint}.`,
      400,
      "invalid_request_error",
      "unsupported_endpoint",
      "model",
    );
  }
}

/**
 * A client went over its requests or tokens per minute. 429s are retried by the SDKs, and `retry-after`
 * (within 60 s, which a one-minute window always is) tells them when.
 */
export class RateLimitError extends GatewayError {
  constructor(limit: "requests" | "tokens", perMinute: number, who: string, retryAfterSeconds: number) {
    super(
      `Rate limit reached for ${who}: ${perMinute} ${limit} per minute. Try again in ${retryAfterSeconds} s.`,
      429,
      "rate_limit_error",
      "rate_limit_exceeded",
      null,
      {
        "retry-after": String(retryAfterSeconds),
        [`x-ratelimit-limit-${limit}`]: String(perMinute),
        [`x-ratelimit-remaining-${limit}`]: "0",
      },
    );
  }
}

/** Too many requests in flight, for one client or for the whole gateway: try again in a moment. */
export class TooManyConcurrentRequestsError extends GatewayError {
  constructor(message: string) {
    super(message, 503, "server_error", "too_many_concurrent_requests", null, { "retry-after": "1" });
  }
}

/**
 * The shared limits store cannot be reached and `on_store_failure: closed` says not to serve without it. The
 * SDKs retry a 503 with `retry-after`.
 */
export class LimitsUnavailableError extends GatewayError {
  constructor() {
    super(
      "The gateway cannot check its rate limits right now (the limits store is unreachable). Try again in a moment.",
      503,
      "server_error",
      "limits_unavailable",
      null,
      { "retry-after": "1" },
    );
  }
}

/** The completions path reads JSON only; a form or text body is refused rather than guessed at. */
export class UnsupportedMediaTypeError extends GatewayError {
  constructor(contentType: string) {
    super(
      `Content-Type must be application/json, not '${contentType.slice(0, 100)}'.`,
      415,
      "invalid_request_error",
      "unsupported_media_type",
    );
  }
}

/** The request (its headers or its body) did not arrive within the time allowed: a client too slow, or stalled. */
export class RequestTimeoutError extends GatewayError {
  constructor(seconds: number) {
    super(
      `The request body did not arrive within ${seconds} s.`,
      408,
      "invalid_request_error",
      "request_timeout",
      null,
      { connection: "close" },
    );
  }
}

/** A `Content-Encoding` (or charset) the gateway cannot decode. */
export class UnsupportedEncodingError extends GatewayError {
  constructor(message: string) {
    super(message, 415, "invalid_request_error", "unsupported_encoding");
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

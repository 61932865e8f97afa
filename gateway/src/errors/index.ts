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

/** The upstream answered with a status we pass on as a client error (its 4xx, other than auth problems). */
export class UpstreamClientError extends GatewayError {
  constructor(backend: string, status: number, upstreamMessage: string, headers: Record<string, string> = {}) {
    super(`Backend '${backend}' rejected the request: ${upstreamMessage}`, status, status === 429 ? "rate_limit_error" : "invalid_request_error", "upstream_client_error", null, headers);
  }
}

/** The upstream answered with an error status that is the gateway's or upstream's fault, not the client's. */
export class UpstreamHttpError extends GatewayError {
  constructor(backend: string, status: number, upstreamMessage: string) {
    super(`Backend '${backend}' answered HTTP ${status}: ${upstreamMessage}`, 502, "upstream_error", "upstream_http_error");
  }
}

export class UpstreamUnreachableError extends GatewayError {
  constructor(backend: string, cause: string) {
    super(`Backend '${backend}' could not be reached: ${cause}`, 502, "upstream_error", "upstream_unreachable");
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

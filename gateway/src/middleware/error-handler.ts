import type { NextFunction, Request, Response } from "express";
import { ClientClosedError, GatewayError, InternalError, InvalidRequestError, NotFoundError, PayloadTooLargeError } from "../errors";
import { contextOf } from "./request-context";

/**
 * Statuses where sending the same request again cannot succeed. The openai SDK reads `x-should-retry` before
 * anything else; without it, it would retry a 508 like any 5xx and run a gateway loop three times over.
 */
const FUTILE_TO_RETRY: ReadonlySet<number> = new Set([400, 401, 403, 404, 405, 413, 415, 422, 508]);

/** The errors body-parser raises carry a `type`; these are the ones a client can cause. */
interface BodyParserError {
  readonly type: string;
  readonly status?: number;
  readonly limit?: number;
  readonly message: string;
}

function isBodyParserError(error: unknown): error is BodyParserError {
  return error instanceof Error && typeof (error as { type?: unknown }).type === "string";
}

/** The OpenAI error object for a GatewayError: the body of an error response, or of an in-band stream error. */
export function errorBody(error: GatewayError): { error: { message: string; type: string; param: string | null; code: string | null } } {
  return { error: { message: error.message, type: error.type, param: error.param, code: error.code } };
}

export function toGatewayError(error: unknown): GatewayError | undefined {
  if (error instanceof GatewayError) return error;
  if (!isBodyParserError(error)) return undefined;
  switch (error.type) {
    case "entity.parse.failed":
      return new InvalidRequestError(`The request body is not valid JSON: ${error.message}`, null, "invalid_json");
    case "entity.too.large":
      return new PayloadTooLargeError(error.limit ?? 0);
    case "request.aborted":
      return new ClientClosedError();
    case "encoding.unsupported":
    case "charset.unsupported":
    case "request.size.invalid":
      return new InvalidRequestError(error.message, null, "invalid_body");
    default:
      return undefined;
  }
}

/** The only place that writes error bodies: OpenAI's `{"error": {message, type, param, code}}`. */
export function errorHandler() {
  return (error: unknown, _req: Request, res: Response, _next: NextFunction): void => {
    const context = contextOf(res);
    let known = toGatewayError(error);
    if (known === undefined) {
      context.logger.error("unhandled error", { error: error instanceof Error ? (error.stack ?? error.message) : String(error) });
      known = new InternalError();
    } else if (known.status >= 500) {
      context.logger.warn("request failed", { code: known.code, error: known.message });
    }
    if (res.headersSent) {
      res.destroy();
      return;
    }
    // An upstream's own x-should-retry (passed on in the error's headers) outranks the status rule.
    if (FUTILE_TO_RETRY.has(known.status)) res.set("x-should-retry", "false");
    res.status(known.status).set(known.headers).json(errorBody(known));
  };
}

export function notFound() {
  return (req: Request, _res: Response, next: NextFunction): void => next(new NotFoundError(req.method, req.path));
}

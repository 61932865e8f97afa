import type { NextFunction, Request, Response } from "express";
import { GatewayError, InternalError, NotFoundError } from "../errors";
import { contextOf } from "./request-context";

/**
 * Statuses where sending the same request again cannot succeed. The openai SDK reads `x-should-retry` before
 * anything else; without it, it would retry a 508 like any 5xx and run a gateway loop three times over.
 */
const FUTILE_TO_RETRY: ReadonlySet<number> = new Set([400, 401, 403, 404, 405, 413, 415, 422, 508]);

/**
 * Express's own parts (the router decoding a path parameter, say) report a bad request as an Error with a
 * 4xx `status`, http-errors' convention: the client's fault, so its status, never a 500.
 */
function clientStatus(error: unknown): number | undefined {
  if (!(error instanceof Error)) return undefined;
  const status = (error as { status?: unknown }).status;
  return typeof status === "number" && Number.isInteger(status) && status >= 400 && status < 500 ? status : undefined;
}

/** The OpenAI error object for a GatewayError: the body of an error response, or of an in-band stream error. */
export function errorBody(error: GatewayError): {
  error: { message: string; type: string; param: string | null; code: string | null };
} {
  return { error: { message: error.message, type: error.type, param: error.param, code: error.code } };
}

export function toGatewayError(error: unknown): GatewayError | undefined {
  if (error instanceof GatewayError) return error;
  const status = clientStatus(error);
  if (status === undefined || !(error instanceof Error)) return undefined;
  return new GatewayError(error.message.slice(0, 300), status, "invalid_request_error", "invalid_request");
}

/** The only place that writes error bodies: OpenAI's `{"error": {message, type, param, code}}`. */
export function errorHandler() {
  return (error: unknown, _req: Request, res: Response, _next: NextFunction): void => {
    const context = contextOf(res);
    let known = toGatewayError(error);
    if (known === undefined) {
      context.logger.error("unhandled error", {
        error: error instanceof Error ? (error.stack ?? error.message) : String(error),
      });
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

import type { Request, Response } from "express";
import type { Logger } from "winston";
import { requestLineWriter } from "../observability/logger";
import { outcomeStatus, type RequestContext } from "./request-context";

/**
 * One JSON line per request once it is over (run by requestContext when the response closes): 499 when the
 * client left first, and a stream that broke after its 200 with the status it failed with (see
 * RequestContext.failedStatus).
 */
export function accessLine(logger: Logger) {
  const write = requestLineWriter(logger);
  return (req: Request, res: Response, context: RequestContext): void => {
    write({
      requestId: context.requestId,
      method: req.method,
      path: req.path,
      status: outcomeStatus(res, context),
      backend: context.backend ?? null,
      // Only when a backend call was made: the target (upstream) of the last one.
      ...(context.target === undefined ? {} : { target: context.target }),
      stream: context.stream,
      durationMs: Math.round((performance.now() - context.startedAt) * 100) / 100,
      // The key's configured name, never the key; only with auth on, so lines keep their shape without it.
      ...(context.key === undefined ? {} : { key: context.key }),
    });
  };
}

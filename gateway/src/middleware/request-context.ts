import type { NextFunction, Request, Response } from "express";
import type { Logger } from "winston";
import { requestIdFrom } from "../utils/request-id";

/** What every later middleware and handler knows about the request in flight. */
export interface RequestContext {
  readonly requestId: string;
  /** Carries the request id into every line this request logs. */
  readonly logger: Logger;
  /** Aborted when the client disconnects before the response is complete. */
  readonly signal: AbortSignal;
  readonly startedAt: number;
  /** The backend chosen for this request, once routed. */
  backend: string | undefined;
  /** Whether the answer is a stream of server-sent events. */
  stream: boolean;
  /**
   * The status a stream that broke after its 200 went out would have had (502, 504): what logs and
   * metrics record, since the client could only be told in-band.
   */
  failedStatus: number | undefined;
  /** Gateways the request passed through before this one (`x-gateway-hops`), once the loop guard read it. */
  hops: number;
}

/** The status to log and count: a broken stream's real outcome, 499 if the client left, else what was sent. */
export function outcomeStatus(res: Response, context: RequestContext): number {
  return context.failedStatus ?? (res.writableFinished ? res.statusCode : 499);
}

const contexts = new WeakMap<Response, RequestContext>();

export function contextOf(res: Response): RequestContext {
  const context = contexts.get(res);
  if (context === undefined) throw new Error("requestContext middleware is not installed");
  return context;
}

/**
 * Gives every request an id (the client's `x-request-id` when it is safe, else a new UUID), echoes it on
 * the response before anything else can fail, and ties an AbortSignal to the client's connection.
 */
export function requestContext(logger: Logger) {
  return (req: Request, res: Response, next: NextFunction): void => {
    const requestId = requestIdFrom(req.get("x-request-id"));
    res.setHeader("x-request-id", requestId);
    const controller = new AbortController();
    res.on("close", () => {
      if (!res.writableFinished) controller.abort();
    });
    contexts.set(res, { requestId, logger: logger.child({ requestId }), signal: controller.signal, startedAt: performance.now(), backend: undefined, stream: false, failedStatus: undefined, hops: 0 });
    next();
  };
}

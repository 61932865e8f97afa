import type { NextFunction, Request, Response } from "express";
import { type Endpoint, type GatewayMetrics, NO_BACKEND } from "../observability/metrics";
import { contextOf, outcomeStatus, type RequestContext } from "./request-context";

/**
 * Marks the requests to the route it is mounted on as counted: mounted only on the inference route, so
 * probes and scrapes are not. A flag, not a listener of its own: requestContext's one `close` listener
 * runs requestCounter once the request is over.
 */
export function metered(endpoint: Endpoint) {
  return (_req: Request, res: Response, next: NextFunction): void => {
    const context = contextOf(res);
    context.metered = true;
    context.endpoint = endpoint;
    next();
  };
}

/**
 * Counts and times a metered request once it is over: labelled with the backend it was routed to (`none`
 * when refused before routing), its status (499 when the client left first) and whether it streamed.
 */
export function requestCounter(metrics: GatewayMetrics) {
  return (_req: Request, res: Response, context: RequestContext): void => {
    if (!context.metered) return;
    const seconds = (performance.now() - context.startedAt) / 1000;
    metrics
      .request(context.backend ?? NO_BACKEND, context.endpoint)
      .observe(outcomeStatus(res, context), context.stream, seconds);
  };
}

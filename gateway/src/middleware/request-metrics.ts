import type { NextFunction, Request, Response } from "express";
import { type GatewayMetrics, NO_BACKEND } from "../observability/metrics";
import { contextOf, outcomeStatus } from "./request-context";

/**
 * Counts and times each request to the route it is mounted on, once it is over: labelled with the backend
 * it was routed to (`none` when refused before routing), its status (499 when the client left first) and
 * whether it streamed. Mounted only on the inference route, so probes and scrapes are not counted.
 */
export function requestMetrics(metrics: GatewayMetrics) {
  return (_req: Request, res: Response, next: NextFunction): void => {
    res.on("close", () => {
      const context = contextOf(res);
      const seconds = (performance.now() - context.startedAt) / 1000;
      metrics.request(context.backend ?? NO_BACKEND).observe(outcomeStatus(res, context), context.stream, seconds);
    });
    next();
  };
}

import { Router } from "express";
import type { GatewayMetrics } from "../observability/metrics";
import { methodNotAllowed } from "./method-not-allowed";

/**
 * `GET /metrics`: this app's Registry in the Prometheus text exposition format, or what `scrape` gives
 * (the sum over cluster workers, in the same format).
 */
export function createMetricsRouter(deps: { readonly metrics: GatewayMetrics; readonly scrape?: () => Promise<string> }): Router {
  const { registry } = deps.metrics;
  const scrape = deps.scrape ?? (() => registry.metrics());
  const router = Router();
  router
    .route("/metrics")
    .get(async (_req, res) => {
      const text = await scrape();
      res.type(registry.contentType).send(text);
    })
    .all(methodNotAllowed("GET", "HEAD"));
  return router;
}

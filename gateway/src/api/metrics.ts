import { Router } from "express";
import type { GatewayMetrics } from "../observability/metrics";
import { methodNotAllowed } from "./method-not-allowed";

/** `GET /metrics`: this app's Registry in the Prometheus text exposition format. */
export function createMetricsRouter(deps: { readonly metrics: GatewayMetrics }): Router {
  const { registry } = deps.metrics;
  const router = Router();
  router
    .route("/metrics")
    .get(async (_req, res) => {
      const text = await registry.metrics();
      res.type(registry.contentType).send(text);
    })
    .all(methodNotAllowed("GET", "HEAD"));
  return router;
}

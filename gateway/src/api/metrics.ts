import { Router } from "express";
import { AuthenticationError } from "../errors";
import { carriesKey } from "../access/keys";
import type { GatewayMetrics } from "../observability/metrics";
import { methodNotAllowed } from "./method-not-allowed";

/**
 * `GET /metrics`: this app's Registry in the Prometheus text exposition format, or what `scrape` gives
 * (the sum over cluster workers, in the same format).
 */
export function createMetricsRouter(deps: {
  readonly metrics: GatewayMetrics;
  readonly scrape?: () => Promise<string>;
  readonly metricsKey?: Buffer;
}): Router {
  const { registry } = deps.metrics;
  const scrape = deps.scrape ?? (() => registry.metrics());
  const router = Router();
  router
    .route("/metrics")
    .get(async (req, res) => {
      // Open by default (Prometheus scrapes without credentials); `auth.metrics_key` closes it.
      if (deps.metricsKey !== undefined && !carriesKey(req.headers.authorization, deps.metricsKey)) {
        throw new AuthenticationError(req.headers.authorization === undefined);
      }
      const text = await scrape();
      res.type(registry.contentType).send(text);
    })
    .all(methodNotAllowed("GET", "HEAD"));
  return router;
}

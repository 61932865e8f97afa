import express, { type Express } from "express";
import type { Logger } from "winston";
import type { Admission } from "./access/admission";
import type { KeyRing } from "./access/keys";
import type { AccessMetrics } from "./access/metrics";
import { authenticate } from "./access/middleware";
import { createHealthRouter } from "./api/health";
import { createMetricsRouter } from "./api/metrics";
import { createChatCompletionsRouter } from "./api/v1/chat-completions";
import { createModelsRouter, type ModelInfo } from "./api/v1/models";
import { accessLog } from "./middleware/access-log";
import { errorHandler, notFound } from "./middleware/error-handler";
import { requestContext } from "./middleware/request-context";
import { requestMetrics } from "./middleware/request-metrics";
import type { GatewayMetrics } from "./observability/metrics";
import type { InferenceService } from "./services/inference";
import type { Lifecycle } from "./services/lifecycle";

export interface AppDependencies {
  readonly logger: Logger;
  readonly inference: InferenceService;
  /** This app's own Registry and metrics, served on `/metrics`. */
  readonly metrics: GatewayMetrics;
  /** Gateway API keys; when empty, auth is off. */
  readonly keys: KeyRing;
  /** Limits per client and the cap on requests in flight. */
  readonly admission: Admission;
  readonly accessMetrics: AccessMetrics;
  /** SHA-256 of the key `/metrics` asks for, when it asks for one. */
  readonly metricsKey?: Buffer;
  /** What `/v1/models` lists: one per configured backend. */
  readonly models: readonly ModelInfo[];
  readonly lifecycle: Lifecycle;
  readonly maxBodyBytes: number;
  /** BODY_TIMEOUT: a request body must arrive whole within this many seconds (408 past it). */
  readonly bodyTimeoutSeconds: number;
  /** MAX_HOPS: requests that passed through this many gateways already are refused with 508. */
  readonly maxHops: number;
  readonly startedAt: Date;
  /**
   * What `/metrics` serves, when not this app's own Registry: under WORKERS > 1, the sum over all workers
   * (see cluster.ts).
   */
  readonly scrape?: () => Promise<string>;
}

/** Builds the HTTP app from its collaborators. It never listens: main.ts does, and tests use port 0. */
export function createApp(deps: AppDependencies): Express {
  const app = express();
  app.disable("x-powered-by");
  app.disable("etag");
  app.use(requestContext(deps.logger));
  app.use((_req, res, next) => {
    // While draining, tell keep-alive clients to reconnect elsewhere instead of reusing this socket.
    if (!deps.lifecycle.isReady) res.setHeader("connection", "close");
    next();
  });
  app.use(accessLog(deps.logger));
  // The inference route first: every request walks the routers in order, and this one gets the traffic.
  app.all("/v1/chat/completions", requestMetrics(deps.metrics));
  if (deps.keys.enabled) app.use("/v1", authenticate(deps.keys, deps.accessMetrics));
  app.use(createChatCompletionsRouter(deps));
  app.use(createHealthRouter(deps));
  app.use(createMetricsRouter(deps));
  app.use(createModelsRouter(deps));
  app.use(notFound());
  app.use(errorHandler());
  return app;
}

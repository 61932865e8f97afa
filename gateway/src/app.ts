import express, { type Express } from "express";
import { IncomingMessage, ServerResponse, type ServerOptions } from "node:http";
import type { Logger } from "winston";
import type { AdmissionControl } from "./access/shared-admission";
import type { KeyRing } from "./access/keys";
import type { AccessMetrics } from "./access/metrics";
import { authenticate } from "./access/middleware";
import { createHealthRouter } from "./api/health";
import { createMetricsRouter } from "./api/metrics";
import { createChatCompletionsRouter } from "./api/v1/chat-completions";
import { createCompletionsRouter } from "./api/v1/completions";
import { createEmbeddingsRouter } from "./api/v1/embeddings";
import { createResponsesRouter } from "./api/v1/responses";
import { createModelsRouter, type ModelInfo } from "./api/v1/models";
import { accessLine } from "./middleware/access-log";
import { errorHandler, notFound } from "./middleware/error-handler";
import { requestContext } from "./middleware/request-context";
import { metered, requestCounter } from "./middleware/request-metrics";
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
  readonly admission: AdmissionControl;
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
  /** Told when each request is over (a config generation counts the requests it still serves: reload.ts). */
  readonly onRequestEnd?: () => void;
}

/** Builds the HTTP app from its collaborators. It never listens: main.ts does, and tests use port 0. */
export function createApp(deps: AppDependencies): Express {
  const app = express();
  app.disable("x-powered-by");
  app.disable("etag");
  const logLine = accessLine(deps.logger);
  const count = requestCounter(deps.metrics);
  const ended = deps.onRequestEnd;
  app.use(
    requestContext(deps.logger, (req, res, context) => {
      logLine(req, res, context);
      count(req, res, context);
      ended?.();
    }),
  );
  app.use((_req, res, next) => {
    // While draining, tell keep-alive clients to reconnect elsewhere instead of reusing this socket.
    if (!deps.lifecycle.isReady) res.setHeader("connection", "close");
    next();
  });
  // The inference route first: every request walks the routers in order, and this one gets the traffic.
  app.all("/v1/chat/completions", metered("chat"));
  app.all("/v1/embeddings", metered("embeddings"));
  app.all("/v1/completions", metered("completions"));
  app.all("/v1/responses", metered("responses"));
  if (deps.keys.enabled) app.use("/v1", authenticate(deps.keys, deps.accessMetrics));
  app.use(createChatCompletionsRouter(deps));
  app.use(createEmbeddingsRouter(deps));
  app.use(createCompletionsRouter(deps));
  app.use(createResponsesRouter(deps));
  app.use(createHealthRouter(deps));
  app.use(createMetricsRouter(deps));
  app.use(createModelsRouter(deps));
  app.use(notFound());
  app.use(errorHandler());
  return app;
}

/**
 * The request and response classes for node:http's server (its `IncomingMessage` and `ServerResponse`
 * options): their instances are born with Express's prototypes. Express sets them on every request with
 * Object.setPrototypeOf, and changing a live object's prototype is slow and unsettles every inline cache
 * that sees those objects; on an object born with them, the call changes nothing.
 */
export function expressServerClasses(app: Express): Pick<ServerOptions, "IncomingMessage" | "ServerResponse"> {
  function ExpressRequest(...args: ConstructorParameters<typeof IncomingMessage>): IncomingMessage {
    return Reflect.construct(IncomingMessage, args, ExpressRequest) as IncomingMessage;
  }
  ExpressRequest.prototype = app.request;
  function ExpressResponse(...args: ConstructorParameters<typeof ServerResponse>): ServerResponse {
    return Reflect.construct(ServerResponse, args, ExpressResponse) as ServerResponse;
  }
  ExpressResponse.prototype = app.response;
  return {
    IncomingMessage: ExpressRequest as unknown as typeof IncomingMessage,
    ServerResponse: ExpressResponse as unknown as typeof ServerResponse,
  };
}

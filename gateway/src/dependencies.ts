import { Registry } from "prom-client";
import type { Logger } from "winston";
import { Admission } from "./access/admission";
import { SharedAdmission, type SharedBooks } from "./access/shared-admission";
import { KeyRing } from "./access/keys";
import { createAccessMetrics } from "./access/metrics";
import type { AppDependencies } from "./app";
import type { Backend } from "./backends/backend";
import type { BackendRegistry } from "./backends/registry";
import { DEFAULT_MAX_BUFFERED_BYTES, ResponseBudget } from "./backends/response-budget";
import type { GatewayConfig } from "./config/config";
import { DEFAULT_BODY_TIMEOUT_SECONDS, type Env } from "./config/settings";
import { LimitsStore } from "./limits-store";
import { createMetrics } from "./observability/metrics";
import { InferenceService } from "./services/inference";
import { Lifecycle } from "./services/lifecycle";

/** The app's collaborators, plus the backends themselves for main.ts's start-up log (the app never sees them). */
export interface Dependencies extends AppDependencies {
  readonly backends: readonly Backend[];
  /** The shared limits store's connection, when `limits_store` is configured: closed at shutdown. */
  readonly limitsStore?: { connected(ms: number): Promise<boolean>; close(): Promise<void> };
}

/** Builds the object graph for one app from an already checked config. */
export function buildDependencies(options: {
  readonly config: GatewayConfig;
  readonly registry: BackendRegistry;
  readonly logger: Logger;
  readonly env: Env;
  readonly maxBodyBytes: number;
  readonly maxHops: number;
  /** Default 10 s (BODY_TIMEOUT). */
  readonly bodyTimeoutSeconds?: number;
  /** Settings.maxBufferedBytes (`MAX_BUFFERED_BYTES`); its default when absent. */
  readonly maxBufferedBytes?: number;
  /**
   * In a cluster worker: where every worker's requests are counted against the clients' limits together.
   * A configured `limits_store` takes its place (it counts every worker of every replica).
   */
  readonly sharedBooks?: SharedBooks;
  /** Worker processes of this replica (WORKERS), for the store's `on_store_failure: local` share. */
  readonly processes?: number;
}): Dependencies {
  const { config, registry, logger, env } = options;
  // One budget for the whole process: every backend's buffered answers count against it together.
  const responseBudget = new ResponseBudget(options.maxBufferedBytes ?? DEFAULT_MAX_BUFFERED_BYTES);
  const backends = config.backends.map((backendConfig) =>
    registry.create(backendConfig, {
      env,
      logger,
      responseBudget,
      ...(backendConfig.resilience.circuitBreaker === undefined
        ? {}
        : { circuitBreaker: backendConfig.resilience.circuitBreaker }),
    }),
  );
  const defaultBackend = backends.find((backend) => backend.name === config.defaultBackend);
  // parseConfig guarantees the default exists; this guards against a config built by hand in a test.
  if (defaultBackend === undefined) throw new Error(`default backend '${config.defaultBackend}' is not configured`);
  const policies = new Map(config.backends.map((backendConfig) => [backendConfig.name, backendConfig.resilience]));
  const fallbacks = new Map(
    config.backends.map((backendConfig) => [backendConfig.name, backendConfig.resilience.fallbacks]),
  );
  // One Registry per app: building two apps in one process (as tests do) never collides.
  const metrics = createMetrics(
    new Registry(),
    backends.map((backend) => backend.name),
    fallbacks,
  );
  const limitsStore =
    config.access.store === undefined
      ? undefined
      : new LimitsStore(config.access, config.access.store, {
          registry: metrics.registry,
          logger,
          processes: options.processes ?? 1,
        });
  const books = limitsStore ?? options.sharedBooks;
  const admission = books === undefined ? new Admission(config.access) : new SharedAdmission(config.access, books);
  const accessMetrics = createAccessMetrics(
    metrics.registry,
    config.access.keys.map((key) => key.name),
    () => admission.requestsInFlight,
  );
  return {
    logger,
    backends,
    models: backends.map((backend) => ({ id: backend.name, ownedBy: backend.type })),
    metrics,
    keys: new KeyRing(config.access.keys),
    admission,
    accessMetrics,
    ...(config.access.metricsKey === undefined ? {} : { metricsKey: config.access.metricsKey }),
    inference: new InferenceService(backends, defaultBackend, metrics, { policies, refusals: accessMetrics }),
    lifecycle: new Lifecycle(),
    maxBodyBytes: options.maxBodyBytes,
    bodyTimeoutSeconds: options.bodyTimeoutSeconds ?? DEFAULT_BODY_TIMEOUT_SECONDS,
    maxHops: options.maxHops,
    startedAt: new Date(),
    ...(limitsStore === undefined ? {} : { limitsStore }),
  };
}

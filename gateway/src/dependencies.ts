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
import { stableText } from "./utils/stable-text";
import { createMetrics } from "./observability/metrics";
import { InferenceService } from "./services/inference";
import { Lifecycle } from "./services/lifecycle";

/** The app's collaborators, plus the backends themselves for main.ts's start-up log (the app never sees them). */
export interface Dependencies extends AppDependencies {
  readonly backends: readonly Backend[];
  /** The shared limits store's connection, when `limits_store` is configured: closed at shutdown. */
  readonly limitsStore?: LimitsStore;
  /** The config these were built from. */
  readonly config: GatewayConfig;
  /** Each backend's settings as stableText: a reload keeps a backend whose settings are the same. */
  readonly backendSettings: ReadonlyMap<string, string>;
  /** The process's one budget for answers buffered whole, shared by every config's backends. */
  readonly responseBudget: ResponseBudget;
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
  /**
   * A reload: the dependencies in force until now. What lives as long as the process is taken from them
   * (metrics, admission, lifecycle, the limits store, the response budget), each reconfigured, and so is
   * every backend whose settings did not change (its pools, breakers and requests in flight with it).
   */
  readonly previous?: Dependencies;
}): Dependencies {
  const { config, registry, logger, env, previous } = options;
  // One budget for the whole process: every backend's buffered answers count against it together.
  const responseBudget =
    previous?.responseBudget ?? new ResponseBudget(options.maxBufferedBytes ?? DEFAULT_MAX_BUFFERED_BYTES);
  const backendSettings = new Map(config.backends.map((backend) => [backend.name, stableText(backend)]));
  const kept = new Map(
    (previous?.backends ?? [])
      .filter((backend) => previous?.backendSettings.get(backend.name) === backendSettings.get(backend.name))
      .map((backend) => [backend.name, backend]),
  );
  const backends = config.backends.map(
    (backendConfig) =>
      kept.get(backendConfig.name) ??
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
  const lasting = previous ?? processParts(options, backends, fallbacks, responseBudget);
  const inForce = previous === undefined ? config : carriedOver(previous, config, backends, fallbacks, logger);
  return {
    ...lasting,
    config: inForce,
    backendSettings,
    backends,
    models: backends.map((backend) => ({ id: backend.name, ownedBy: backend.type })),
    keys: new KeyRing(inForce.access.keys),
    metricsKey: inForce.access.metricsKey,
    inference: new InferenceService(backends, defaultBackend, lasting.metrics, {
      policies,
      refusals: lasting.accessMetrics,
    }),
  };
}

/** What lives as long as the process, whatever config is in force: built once, from the first config. */
type ProcessParts = Omit<Dependencies, "config" | "backendSettings" | "backends" | "models" | "keys" | "inference">;

function processParts(
  options: Parameters<typeof buildDependencies>[0],
  backends: readonly Backend[],
  fallbacks: ReadonlyMap<string, readonly string[]>,
  responseBudget: ResponseBudget,
): ProcessParts {
  const { config, logger } = options;
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
    responseBudget,
    logger,
    metrics,
    admission,
    accessMetrics,
    lifecycle: new Lifecycle(),
    maxBodyBytes: options.maxBodyBytes,
    bodyTimeoutSeconds: options.bodyTimeoutSeconds ?? DEFAULT_BODY_TIMEOUT_SECONDS,
    maxHops: options.maxHops,
    startedAt: new Date(),
    ...(limitsStore === undefined ? {} : { limitsStore }),
  };
}

/**
 * A reloaded config carried over to the process parts in force: the added backends get their series, the
 * admission (and the limits store's local share) the new limits, the key metrics the new keys. Returns the
 * config as it is in force: a changed `limits_store` takes effect at the next start (logged), so it keeps
 * the one the process started with.
 */
function carriedOver(
  previous: Dependencies,
  config: GatewayConfig,
  backends: readonly Backend[],
  fallbacks: ReadonlyMap<string, readonly string[]>,
  logger: Logger,
): GatewayConfig {
  const added = backends.filter((backend) => !previous.backends.includes(backend)).map((backend) => backend.name);
  previous.metrics.addBackends(added, fallbacks);
  if (stableText(previous.config.access.store) !== stableText(config.access.store))
    logger.warn("limits_store changed: it takes effect at the next start; limits are counted as before until then");
  const access = { ...config.access, store: previous.config.access.store };
  previous.admission.reconfigure(access);
  previous.limitsStore?.reconfigure(access);
  previous.accessMetrics.setKeys(access.keys.map((key) => key.name));
  return { ...config, access };
}

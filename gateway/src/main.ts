import cluster from "node:cluster";
import { createServer, type ServerOptions } from "node:http";
import { availableParallelism } from "node:os";
import { answerClientErrors } from "./api/client-error";
import { expressServerClasses } from "./app";
import { defaultBackendRegistry } from "./backends";
import type { BackendRegistry } from "./backends/registry";
import type { GatewayConfig } from "./config/config";
import { ConfigError } from "./config/errors";
import {
  environmentWithDotEnv,
  loadConfigFile,
  parseConfigText,
  readConfigText,
  secretFileWarnings,
} from "./config/load";
import { type Env, parseSettings, type Settings } from "./config/settings";
import { clusterScrape, RELOAD, type ReloadMessage, runPrimary } from "./cluster";
import { isMessage, primaryBooks } from "./cluster-limits";
import { buildDependencies, type Dependencies } from "./dependencies";
import { ConfigGenerations, ConfigReloader, watchConfigFile } from "./reload";
import { createLogger } from "./observability/logger";

/** How long start-up waits for the shared limits store's connection before listening without it. */
const STORE_CONNECT_WAIT_MS = 2000;

/** A bad setting or config file stops start-up with one line naming the key, never a stack trace. */
function loadOrExit(registry: BackendRegistry): { env: Env; settings: Settings; config: GatewayConfig; text: string } {
  try {
    const env = environmentWithDotEnv(process.env, ".env");
    const settings = parseSettings(env);
    const text = readConfigText(settings.configFile);
    return { env, settings, config: parseConfigText(settings.configFile, text, registry, env), text };
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    process.stderr.write(`gateway: config error: ${error.message}\n`);
    process.exit(1);
  }
}

/**
 * The only file that reads the environment, listens, and handles signals. With WORKERS=1 (the default)
 * this process is the server; with more, it is the cluster primary and each worker runs serve() (the
 * config is checked here first, so a bad one fails once, with one line, before any worker starts).
 */
function main(): void {
  const registry = defaultBackendRegistry();
  const { env, settings, config, text } = loadOrExit(registry);
  const workers = settings.workers === "auto" ? availableParallelism() : settings.workers;
  if (cluster.isPrimary) {
    const logger = createLogger({ level: settings.logLevel, service: "gateway" });
    for (const warning of secretFileWarnings(settings.configFile, config, ".env", process.env)) logger.warn(warning);
    if (workers > 1) {
      runPrimary({
        workers,
        logger,
        shutdownTimeoutSeconds: settings.shutdownTimeoutSeconds,
        drainDelaySeconds: settings.drainDelaySeconds,
        access: config.access,
        // The primary counts the clients' limits: it reads the file too, and keeps its limits if it is invalid
        // (each worker then logs and counts the failure itself).
        reloadAccess: () => {
          try {
            const next = loadConfigFile(settings.configFile, registry, environmentWithDotEnv(process.env, ".env"));
            return { ...next.access, store: config.access.store };
          } catch {
            return undefined;
          }
        },
        watch: settings.configWatch ? settings.configFile : undefined,
      });
      return;
    }
  }
  serve(registry, env, settings, config, text, workers);
}

/**
 * Slow clients are bounded at every stage: headers within HEADERS_TIMEOUT of the connection's first byte
 * (an idle new connection included), the body within BODY_TIMEOUT (json-body.ts answers 408 itself; Node's
 * requestTimeout is only the backstop for routes that never read their body), checked every second rather
 * than Node's default 30.
 */
function serverOptions(settings: Settings): ServerOptions {
  const headersMs = settings.headersTimeoutSeconds * 1000;
  return {
    headersTimeout: headersMs,
    requestTimeout: headersMs + settings.bodyTimeoutSeconds * 1000 + 5000,
    connectionsCheckingInterval: 1000,
  };
}

function serve(
  registry: BackendRegistry,
  env: Env,
  settings: Settings,
  config: GatewayConfig,
  text: string,
  workers: number,
): void {
  const logger = createLogger({ level: settings.logLevel, service: "gateway" });
  // Under WORKERS > 1 the clients' limits are counted in the primary, for all workers together (unless a
  // limits_store counts them for every worker of every replica). Made once: a reload keeps the same books.
  const sharedBooks = cluster.isWorker && config.access.store === undefined ? primaryBooks(logger) : undefined;
  const build = (next: GatewayConfig, nextEnv: Env, previous?: Dependencies): Dependencies =>
    buildDependencies({
      config: next,
      registry,
      logger,
      env: nextEnv,
      maxBodyBytes: settings.maxBodyBytes,
      maxHops: settings.maxHops,
      bodyTimeoutSeconds: settings.bodyTimeoutSeconds,
      maxBufferedBytes: settings.maxBufferedBytes,
      ...(sharedBooks === undefined ? {} : { sharedBooks }),
      processes: workers,
      ...(previous === undefined ? {} : { previous }),
    });
  const deps = build(config, env);
  // A worker's /metrics serves the sum over all workers, gathered by the primary. Made once (it listens to
  // the primary): every config generation shares the one registry.
  const scrape = cluster.isWorker ? clusterScrape(deps.metrics.registry) : undefined;
  const generations = new ConfigGenerations(deps, logger, (current) =>
    scrape === undefined ? current : { ...current, scrape },
  );
  const reloader = new ConfigReloader(
    generations,
    {
      file: settings.configFile,
      logger,
      settings,
      env: () => environmentWithDotEnv(process.env, ".env"),
      parse: (nextText, nextEnv) => parseConfigText(settings.configFile, nextText, registry, nextEnv),
      build,
    },
    text,
  );

  process.on("uncaughtException", (error) => {
    logger.error("uncaught exception; exiting", { error: error.stack ?? error.message });
    process.exit(1);
  });

  const server = createServer(
    { ...serverOptions(settings), ...expressServerClasses(generations.firstApp) },
    generations.handle,
  );
  server.maxConnections = settings.maxConnections;
  let droppedWarned = 0;
  server.on("drop", () => {
    // At most one line per 10 s: a flood of refused connections must not become a flood of log lines.
    if (Date.now() - droppedWarned < 10_000) return;
    droppedWarned = Date.now();
    logger.warn("connection limit reached: new connections are being closed", {
      maxConnections: settings.maxConnections,
    });
  });
  const cannotListen = (error: Error): void => {
    process.stderr.write(`gateway: cannot listen on ${settings.host}:${settings.port}: ${error.message}\n`);
    process.exit(1);
  };
  let stopping = false;
  const listen = (): void => {
    if (stopping) return;
    server.once("error", cannotListen);
    server.listen(settings.port, settings.host, () => {
      server.off("error", cannotListen);
      const address = server.address();
      const port = typeof address === "object" && address !== null ? address.port : settings.port;
      // Under WORKERS > 1 each worker says which it is, so its lines can be told apart.
      const worker = cluster.isWorker ? { worker: cluster.worker?.id, pid: process.pid } : {};
      logger.info("gateway listening", {
        host: settings.host,
        port,
        config: settings.configFile,
        defaultBackend: config.defaultBackend,
        ...worker,
      });
      for (const backend of deps.backends)
        logger.info("backend ready", { backend: backend.name, type: backend.type, target: backend.target });
      logger.info("config in force", { file: settings.configFile, hash: reloader.configHash });
      const store = config.access.store;
      if (store !== undefined)
        logger.info("limits counted in the shared store", {
          store: store.display,
          onStoreFailure: store.onStoreFailure,
          expectedReplicas: store.expectedReplicas,
        });
    });
  };
  // With a shared limits store, listening waits for its connection (a moment, bounded): otherwise the first
  // requests would be decided without a store that was only still connecting.
  if (deps.limitsStore === undefined) listen();
  else
    void deps.limitsStore.connected(STORE_CONNECT_WAIT_MS).then((up) => {
      if (!up)
        logger.warn("limits store not reachable at start: serving, deciding without it until it is", {
          store: config.access.store?.display,
          waitedMs: STORE_CONNECT_WAIT_MS,
        });
      listen();
    });
  answerClientErrors(server);

  const shutdown = (signal: NodeJS.Signals): void => {
    if (stopping) return;
    stopping = true;
    deps.lifecycle.beginShutdown();
    // SIGINT is a person at a terminal: no orchestrator is still routing to us, so no reason to wait.
    const delay = signal === "SIGTERM" ? settings.drainDelaySeconds : 0;
    if (delay === 0) {
      closeListener(signal);
      return;
    }
    logger.info("draining: /ready answers 503, still serving new connections until the delay ends", {
      signal,
      drainDelaySeconds: delay,
    });
    setTimeout(() => closeListener(signal), delay * 1000);
  };
  const closeListener = (signal: NodeJS.Signals): void => {
    logger.info("shutting down: no new connections, waiting for requests in flight", {
      signal,
      timeoutSeconds: settings.shutdownTimeoutSeconds,
    });
    const force = setTimeout(() => {
      logger.warn("shutdown timeout reached; closing remaining connections");
      server.closeAllConnections();
    }, settings.shutdownTimeoutSeconds * 1000);
    force.unref();
    // A keep-alive socket whose last response just finished would otherwise hold close() open until the
    // client's own idle timeout; sweeping idle sockets lets the process exit as soon as work is done.
    const sweep = setInterval(() => server.closeIdleConnections(), 100);
    sweep.unref();
    server.close(() => {
      clearTimeout(force);
      clearInterval(sweep);
      const current = generations.deps;
      void Promise.allSettled([current.inference.close(), current.limitsStore?.close()]).finally(() => {
        logger.info("stopped");
        // Exit by running out of work, so the log line above reaches stdout; the timer is a backstop.
        process.exitCode = 0;
        setTimeout(() => process.exit(0), 2000).unref();
        // A worker's IPC channel would keep it alive: let go of it, and of the primary with it.
        if (cluster.isWorker) process.disconnect();
      });
    });
    server.closeIdleConnections();
  };
  process.on("SIGTERM", shutdown);
  process.on("SIGINT", shutdown);
  // SIGHUP reloads the config (it would otherwise end the process). Under WORKERS > 1 the primary gets the
  // signal and asks each worker, which reloads the file itself.
  process.on("SIGHUP", () => {
    if (!stopping) reloader.reload("SIGHUP");
  });
  if (cluster.isWorker)
    process.on("message", (message: unknown) => {
      if (!stopping && isMessage<ReloadMessage>(message, RELOAD)) reloader.reload(message.trigger, message.ifChanged);
    });
  else if (settings.configWatch)
    watchConfigFile(settings.configFile, () => {
      if (!stopping) reloader.reload("CONFIG_WATCH", true);
    });
}

main();

import cluster, { type Worker } from "node:cluster";
import type { Registry } from "prom-client";
import type { Logger } from "winston";
import type { AccessConfig } from "./access/config";
import { isMessage, PrimaryLimits } from "./cluster-limits";
import { watchConfigFile } from "./reload";
import {
  ClusterMetrics,
  SNAPSHOT_REPLY,
  SNAPSHOT_REQUEST,
  type Snapshot,
  type SnapshotReply,
  type SnapshotRequest,
} from "./cluster-metrics";

/**
 * WORKERS > 1: a primary process forks the workers, each of which is the whole gateway (config, backends,
 * app) listening on the shared port; node:cluster hands each new connection to the next worker.
 *
 * `/metrics` is answered by whichever worker gets the scrape, with the sum over all workers: the worker
 * asks the primary over IPC, the primary asks every worker for its registry (cluster-metrics.ts) and answers
 * with the aggregate, in which a dead worker's counters stay. The primary never serves HTTP itself, so the
 * port and path stay what they are with one process and a scrape config does not change with WORKERS.
 */

const SCRAPE_REQUEST = "gateway:scrape";
const SCRAPE_REPLY = "gateway:scrape-reply";

/** The primary uses a worker's last snapshot when it has not answered within this... */
const SNAPSHOT_TIMEOUT_MS = 5000;
/** ...so a worker waiting on the primary's answer gives up a little later. */
const SCRAPE_TIMEOUT_MS = 6000;
/**
 * The primary refreshes every worker's snapshot this often besides at scrapes: what a worker counted after
 * its last snapshot is lost if it dies, so this bounds that loss to a few seconds' worth.
 */
const REFRESH_INTERVAL_MS = 5000;

/** A replaced worker must have lived this long, or its death counts as a crash loop. */
const CRASH_WINDOW_MS = 60_000;
const MAX_CRASHES_IN_WINDOW = 5;
const RESTART_DELAY_MS = 500;

interface ScrapeRequest {
  readonly type: typeof SCRAPE_REQUEST;
  readonly id: number;
}

interface ScrapeReply {
  readonly type: typeof SCRAPE_REPLY;
  readonly id: number;
  readonly text?: string;
  readonly error?: string;
}

/**
 * In a worker: lets the primary read this worker's `registry`, and returns what `/metrics` serves, the
 * metrics of every worker summed (histograms and counters add up, a dead worker's included; gauges too,
 * except where a metric says otherwise, as prom-client's version and start-time gauges do).
 */
export function clusterScrape(registry: Registry): () => Promise<string> {
  const pending = new Map<number, { resolve(text: string): void; reject(error: Error): void }>();
  let nextId = 0;
  process.on("message", (message: unknown) => {
    if (isMessage<SnapshotRequest>(message, SNAPSHOT_REQUEST)) {
      const reply = (answer: SnapshotReply) => {
        if (process.connected) process.send?.(answer);
      };
      // The primary keeps this worker's previous snapshot when collecting fails.
      registry.getMetricsAsJSON().then(
        (metrics: Snapshot) => reply({ type: SNAPSHOT_REPLY, metrics }),
        () => reply({ type: SNAPSHOT_REPLY }),
      );
      return;
    }
    if (!isMessage<ScrapeReply>(message, SCRAPE_REPLY)) return;
    const waiter = pending.get(message.id);
    pending.delete(message.id);
    if (message.text !== undefined) waiter?.resolve(message.text);
    else waiter?.reject(new Error(`cluster metrics: ${message.error ?? "no answer"}`));
  });
  return () =>
    new Promise<string>((resolve, reject) => {
      const id = nextId++;
      const timer = setTimeout(() => {
        pending.delete(id);
        reject(new Error(`cluster metrics: the primary did not answer within ${SCRAPE_TIMEOUT_MS} ms`));
      }, SCRAPE_TIMEOUT_MS);
      pending.set(id, {
        resolve: (text) => (clearTimeout(timer), resolve(text)),
        reject: (error) => (clearTimeout(timer), reject(error)),
      });
      const request: ScrapeRequest = { type: SCRAPE_REQUEST, id };
      process.send?.(request);
    });
}

/** The primary asks every worker to reload the config file (SIGHUP, or CONFIG_WATCH saw it change). */
export const RELOAD = "gateway:reload";
export interface ReloadMessage {
  readonly type: typeof RELOAD;
  readonly trigger: string;
  /** Reload only when the file's content differs from the one in force (the watcher's case). */
  readonly ifChanged: boolean;
}

export interface PrimaryOptions {
  readonly workers: number;
  readonly logger: Logger;
  /** Seconds a worker gets to drain after SIGTERM (its own SHUTDOWN_TIMEOUT) before the primary kills it. */
  readonly shutdownTimeoutSeconds: number;
  /** DRAIN_DELAY: after SIGTERM each worker serves this long (with /ready at 503) before it starts draining. */
  readonly drainDelaySeconds: number;
  /** The clients' limits, counted here for all workers (cluster-limits.ts). */
  readonly access: AccessConfig;
  /** A reload's limits for the primary's books; undefined when the file is invalid (they stay as they are). */
  readonly reloadAccess: () => AccessConfig | undefined;
  /** CONFIG_WATCH: the config file the primary watches for every worker; undefined: no watching. */
  readonly watch: string | undefined;
}

/**
 * Forks `workers` workers and keeps them running: one that dies unexpectedly is replaced, unless workers
 * keep dying (a crash loop: then the primary stops everything and exits 1, for the supervisor to see).
 * SIGTERM or SIGINT is passed to every worker, which drains as a single process would; the primary exits 0
 * once all of them have exited (1 if any failed to stop cleanly).
 */
export function runPrimary(options: PrimaryOptions): void {
  const { logger } = options;
  const metrics = new ClusterMetrics(SNAPSHOT_TIMEOUT_MS);
  const limits = new PrimaryLimits(options.access);
  setInterval(() => void metrics.refresh(), REFRESH_INTERVAL_MS).unref();
  let stopping = false;
  let exitCode = 0;
  const crashes: number[] = [];

  const fork = (): Worker => {
    const worker = cluster.fork();
    // Asked only once it listens: before that its listener may not exist, and the question would go unanswered.
    worker.once("listening", () => metrics.join(worker));
    worker.on("message", (message: unknown) => {
      if (limits.handle(worker, message)) return;
      if (isMessage<SnapshotReply>(message, SNAPSHOT_REPLY)) {
        metrics.answered(worker.id, Array.isArray(message.metrics) ? message.metrics : undefined);
        return;
      }
      if (!isMessage<ScrapeRequest>(message, SCRAPE_REQUEST)) return;
      const answer = (reply: ScrapeReply) => {
        if (worker.isConnected()) worker.send(reply);
      };
      metrics.scrape().then(
        (text) => answer({ type: SCRAPE_REPLY, id: message.id, text }),
        (error: unknown) =>
          answer({ type: SCRAPE_REPLY, id: message.id, error: error instanceof Error ? error.message : String(error) }),
      );
    });
    return worker;
  };

  cluster.on("exit", (worker, code, signal) => {
    metrics.exited(worker.id);
    limits.exited(worker.id);
    if (stopping) {
      if (code !== 0) exitCode = 1;
      if (Object.keys(cluster.workers ?? {}).length === 0) {
        logger.info("stopped", { workers: options.workers });
        // Exit by running out of work (nothing is left but unref'd timers), so the line above is written.
        process.exitCode = exitCode;
      }
      return;
    }
    const now = Date.now();
    crashes.push(now);
    while (crashes.length > 0 && (crashes[0] ?? now) < now - CRASH_WINDOW_MS) crashes.shift();
    if (crashes.length > MAX_CRASHES_IN_WINDOW) {
      logger.error("workers keep dying; stopping", { crashes: crashes.length, windowSeconds: CRASH_WINDOW_MS / 1000 });
      exitCode = 1;
      stopAll("SIGTERM");
      return;
    }
    logger.error("worker died; starting another", { pid: worker.process.pid, code, signal });
    setTimeout(() => {
      if (!stopping) fork();
    }, RESTART_DELAY_MS).unref();
  });

  const stopAll = (signal: NodeJS.Signals): void => {
    if (stopping) return;
    stopping = true;
    logger.info("shutting down workers", { signal, workers: Object.keys(cluster.workers ?? {}).length });
    for (const worker of Object.values(cluster.workers ?? {})) worker?.process.kill(signal);
    // Each worker stops itself within its DRAIN_DELAY (SIGTERM only) and SHUTDOWN_TIMEOUT; this only
    // catches one that hangs anyway.
    const drainDelaySeconds = signal === "SIGTERM" ? options.drainDelaySeconds : 0;
    setTimeout(
      () => {
        for (const worker of Object.values(cluster.workers ?? {})) worker?.process.kill("SIGKILL");
      },
      (drainDelaySeconds + options.shutdownTimeoutSeconds + 5) * 1000,
    ).unref();
  };
  process.on("SIGTERM", stopAll);
  process.on("SIGINT", stopAll);
  const reloadAll = (trigger: string, ifChanged: boolean): void => {
    if (stopping) return;
    const access = options.reloadAccess();
    if (access !== undefined) limits.reconfigure(access);
    const message: ReloadMessage = { type: RELOAD, trigger, ifChanged };
    for (const worker of Object.values(cluster.workers ?? {})) if (worker?.isConnected() === true) worker.send(message);
  };
  process.on("SIGHUP", () => reloadAll("SIGHUP", false));
  if (options.watch !== undefined) watchConfigFile(options.watch, () => reloadAll("CONFIG_WATCH", true));

  logger.info("starting workers", { workers: options.workers });
  for (let i = 0; i < options.workers; i++) fork();
}

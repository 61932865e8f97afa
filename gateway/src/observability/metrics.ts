import { collectDefaultMetrics, Counter, Gauge, Registry } from "prom-client";
import { gatewayVersion } from "../utils/version";
import { CellHistogram, ScrapedCells } from "./metric-cells";
import {
  BackendSeries,
  type Endpoint,
  type Instruments,
  type RequestLabel,
  RequestSeries,
  TargetSeries,
} from "./metric-series";

export type { BackendSeries, Endpoint, RequestSeries, TargetSeries } from "./metric-series";

/** What the target gauges read of a backend's targets at scrape time. */
export interface TargetView {
  readonly name: string;
  readonly inFlight: number;
  /** In rotation: passing its health checks, its breaker closed. */
  readonly up: boolean;
}

/** The `backend` label of requests refused before routing (bad JSON, failed validation, wrong method). */
export const NO_BACKEND = "none";

/**
 * Seconds. LLM answers take from milliseconds (the echo backend, a cache hit, the gateway's own overhead)
 * to minutes (long generations), so the buckets span both ends; 300 s covers the default 60 s timeout with room.
 */
export const LATENCY_BUCKETS: readonly number[] = [
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300,
];

/**
 * Statuses whose request counts exist at 0 for each configured backend: success, and the failures the
 * gateway itself answers for a backend (502 failed, 503 circuit open, 504 timed out). Without them a
 * backend's first 502 would be the series' starting value, invisible to `rate()` and so to error-ratio alerts.
 */
const BACKEND_STATUSES = [200, 502, 503, 504] as const;

/**
 * The gateway's Prometheus metrics, all in one Registry that belongs to one app. The metric names and
 * labels are a contract: operators' dashboards and alerts query them, so they never change casually.
 */
export interface GatewayMetrics {
  /** Every metric, for `/metrics` and the cluster's aggregation; read through it, never by metric object. */
  readonly registry: Registry;
  /**
   * The request-level series for one `backend` label value, made once and cached. Callers pass only a
   * configured backend's name or NO_BACKEND, never client input, so the number of series stays bounded.
   */
  request(backend: string, endpoint?: Endpoint): RequestSeries;
  /** The backend-level series for one configured backend, made once and cached. */
  backend(name: string): BackendSeries;
  /** A request for `from` moved on to its configured fallback `to`; only configured pairs ever appear. */
  fallback(from: string, to: string): void;
  /**
   * `gateway_target_requests_total` for one target of `backend`. Targets are configured or discovered,
   * never client input, so the series stay bounded.
   */
  target(backend: string, target: string): TargetSeries;
  /**
   * Shows `backend`'s current targets at each scrape (`gateway_target_in_flight`, `gateway_target_up`,
   * `gateway_backend_up`): discovery may change them between two scrapes.
   */
  watchTargets(backend: string, targets: () => readonly TargetView[]): void;
  /** A backend a reloaded config dropped: its targets and `gateway_backend_up` are no longer shown. */
  unwatchTargets(backend: string): void;
  /** Series at 0 for backends (and fallback pairs) a reloaded config added, as createMetrics makes at start. */
  addBackends(backendNames: readonly string[], fallbacks: ReadonlyMap<string, readonly string[]>): void;
  /** The config now in force: `gateway_config_info{hash}`; a reload also counts a success and its time. */
  configLoaded(hash: string, reload: boolean): void;
  /** A reload that changed nothing: the file was invalid. */
  configReloadFailed(): void;
}

/**
 * Builds the metrics in `registry` (a fresh one by default, so two apps in one process never collide) and
 * creates every per-backend series at 0 for `backendNames`, and every fallback pair in `fallbacks` (backend
 * name -> its fallbacks): dashboards see each series before its first event, and `rate()` counts that first
 * event instead of treating it as the series' starting value.
 */
export function createMetrics(
  registry: Registry = new Registry(),
  backendNames: readonly string[] = [],
  fallbacks: ReadonlyMap<string, readonly string[]> = new Map(),
): GatewayMetrics {
  collectDefaultMetrics({ register: registry });
  const instruments = defineInstruments(registry);
  /** By endpoint, then backend. */
  const requestSeries = new Map<Endpoint, Map<string, RequestSeries>>();
  const backendSeries = new Map<string, BackendSeries>();
  const metrics: GatewayMetrics = {
    registry,
    request(backend, endpoint = "chat") {
      let byBackend = requestSeries.get(endpoint);
      if (byBackend === undefined) {
        byBackend = new Map();
        requestSeries.set(endpoint, byBackend);
      }
      let series = byBackend.get(backend);
      if (series === undefined) {
        series = new RequestSeries(instruments, backend, endpoint);
        byBackend.set(backend, series);
      }
      return series;
    },
    backend(name) {
      let series = backendSeries.get(name);
      if (series === undefined) {
        series = new BackendSeries(instruments, name);
        backendSeries.set(name, series);
      }
      return series;
    },
    fallback(from, to) {
      instruments.fallbacks.inc({ from, to });
    },
    target(backend, target) {
      return new TargetSeries(instruments.targetRequests, backend, target);
    },
    watchTargets(backend, targets) {
      instruments.watched.set(backend, targets);
    },
    unwatchTargets(backend) {
      instruments.watched.delete(backend);
    },
    addBackends(names, pairs) {
      for (const name of names) {
        for (const status of BACKEND_STATUSES) metrics.request(name).zero(status);
        metrics.backend(name);
      }
      for (const [from, targets] of pairs) for (const to of targets) instruments.fallbacks.inc({ from, to }, 0);
    },
    configLoaded(hash, reload) {
      // One series: the hash in force (the summed scrape under WORKERS > 1 counts the workers on it).
      config.info.reset();
      config.info.set({ hash }, 1);
      config.lastSuccess.set(Date.now() / 1000);
      if (reload) config.reloads.inc({ result: "success" });
    },
    configReloadFailed() {
      config.reloads.inc({ result: "failure" });
    },
  };
  const config = defineConfigInstruments(registry);
  metrics.addBackends(backendNames, fallbacks);
  metrics.request(NO_BACKEND).zero(400);
  return metrics;
}

/** The config's own metrics: which file is in force, and how its reloads went. */
function defineConfigInstruments(registry: Registry) {
  const registers = [registry];
  const reloads = new Counter({
    name: "gateway_config_reloads_total",
    help: "Config reloads (SIGHUP, or CONFIG_WATCH seeing the file change) by result: success (in force) or failure (invalid file: nothing changed).",
    labelNames: ["result"] as const,
    registers,
  });
  reloads.inc({ result: "success" }, 0);
  reloads.inc({ result: "failure" }, 0);
  const lastSuccess = new Gauge({
    name: "gateway_config_last_reload_success_timestamp_seconds",
    help: "When the config in force was loaded (at start, or by the last successful reload), in Unix seconds.",
    // Under WORKERS > 1: the oldest worker's, so the summed scrape shows whether every worker has reloaded.
    aggregator: "min",
    registers,
  });
  const info = new Gauge({
    name: "gateway_config_info",
    help: "Always 1 per process; `hash` is a short SHA-256 of the config file in force (under WORKERS > 1 the value is how many workers run it).",
    labelNames: ["hash"] as const,
    registers,
  });
  return { reloads, lastSuccess, info };
}

interface Defined extends Instruments {
  readonly fallbacks: Counter<"from" | "to">;
  readonly targetRequests: Counter<"backend" | "target" | "code">;
  /** Each backend's targets as they are now, read at scrape time. */
  readonly watched: Map<string, () => readonly TargetView[]>;
}

/** The metric definitions: names, labels and help text, the part of the contract dashboards read. */
function defineInstruments(registry: Registry): Defined {
  const registers = [registry];
  const cells = {
    requests: new ScrapedCells<RequestLabel>(),
    tokens: new ScrapedCells<"backend" | "type" | "endpoint">(),
    inFlight: new ScrapedCells<"backend">(),
  };
  // The metrics fed from cells need no handle: registering them is enough, their collect() does the rest.
  new Counter({
    name: "gateway_requests_total",
    help: "Inference requests answered, by endpoint (chat, completions, embeddings, responses), the backend that served them ('none' when refused before routing), HTTP status (499: the client left) and streaming.",
    labelNames: ["backend", "code", "stream", "endpoint"] as const,
    registers,
    collect() {
      cells.requests.addTo(this);
    },
  });
  const requestDuration = new CellHistogram({
    name: "gateway_request_duration_seconds",
    help: "Time from an inference request's arrival to its last byte (or the client leaving), in seconds, by endpoint.",
    labelNames: ["backend", "stream", "endpoint"] as const,
    buckets: [...LATENCY_BUCKETS],
    registers,
  });
  const backendRequestDuration = new CellHistogram({
    name: "gateway_backend_request_duration_seconds",
    help: "Time spent waiting on the backend per call (a retry is another call), in seconds; subtract it from gateway_request_duration_seconds for the gateway's own overhead.",
    labelNames: ["backend"] as const,
    buckets: [...LATENCY_BUCKETS],
    registers,
  });
  const backendErrors = new Counter({
    name: "gateway_backend_errors_total",
    help: "Backend calls that failed, by reason: timeout, connection, http_status, invalid_response, stream_interrupted.",
    labelNames: ["backend", "reason"] as const,
    registers,
  });
  new Counter({
    name: "gateway_tokens_total",
    help: "Tokens in answered requests (the backend's usage, else the gateway's estimate), by type (prompt or completion) and endpoint.",
    labelNames: ["backend", "type", "endpoint"] as const,
    registers,
    collect() {
      cells.tokens.addTo(this);
    },
  });
  new Gauge({
    name: "gateway_in_flight_requests",
    help: "Requests routed to a backend and not yet answered by it.",
    labelNames: ["backend"] as const,
    registers,
    collect() {
      cells.inFlight.setOn(this);
    },
  });
  const timeToFirstToken = new CellHistogram({
    name: "gateway_time_to_first_token_seconds",
    help: "For streamed answers, time from the request's arrival to the first token sent to the client, in seconds.",
    labelNames: ["backend"] as const,
    buckets: [...LATENCY_BUCKETS],
    registers,
  });
  const fallbackCount = new Counter({
    name: "gateway_fallbacks_total",
    help: "Requests for backend 'from' that failed there before their first byte and were handed to its configured fallback 'to'.",
    labelNames: ["from", "to"] as const,
    registers,
  });
  const watched = new Map<string, () => readonly TargetView[]>();
  new Gauge({
    name: "gateway_backend_up",
    help: "1 while at least one of the backend's targets is up (passing its health checks, its circuit breaker closed); 0 while none is.",
    labelNames: ["backend"] as const,
    // Under WORKERS > 1 each worker has its own breakers: the summed scrape shows 0 when any worker sees none up.
    aggregator: "min",
    registers,
    collect() {
      // Reset first: a backend a reload dropped stops being shown.
      this.reset();
      for (const [backend, targets] of watched) this.set({ backend }, targets().some((target) => target.up) ? 1 : 0);
    },
  });
  const targetRequests = new Counter({
    name: "gateway_target_requests_total",
    help: "Calls to one target (upstream) of a backend, by the upstream's HTTP status (or the gateway's when it gave none: 502 unreachable, 504 timed out, 499 the client left); a retry or failover is another call.",
    labelNames: ["backend", "target", "code"] as const,
    registers,
    collect() {
      // Every current target's 200 exists from its first scrape, so rate() sees its first success.
      for (const [backend, targets] of watched)
        for (const target of targets()) this.inc({ backend, target: target.name, code: "200" }, 0);
    },
  });
  new Gauge({
    name: "gateway_target_in_flight",
    help: "Calls sent to the target and not yet over (a stream until its last event): what least_outstanding balances on.",
    labelNames: ["backend", "target"] as const,
    registers,
    collect() {
      this.reset();
      for (const [backend, targets] of watched)
        for (const target of targets()) this.set({ backend, target: target.name }, target.inFlight);
    },
  });
  new Gauge({
    name: "gateway_target_up",
    help: "1 while the target is in the rotation (passing its health checks, its circuit breaker closed); 0 while it is out.",
    labelNames: ["backend", "target"] as const,
    // Each worker has its own breakers and checks: the summed scrape shows 0 when any worker has it out.
    aggregator: "min",
    registers,
    collect() {
      this.reset();
      for (const [backend, targets] of watched)
        for (const target of targets()) this.set({ backend, target: target.name }, target.up ? 1 : 0);
    },
  });
  const backendRetries = new Counter({
    name: "gateway_backend_retries_total",
    help: "Calls to a backend repeated after a retryable failure (connection error, 429, 502, 503, 504), before the first byte.",
    labelNames: ["backend"] as const,
    registers,
  });
  const buildInfo = new Gauge({
    name: "gateway_build_info",
    help: "Always 1; the labels say which gateway version runs on which Node.js.",
    labelNames: ["version", "node_version"] as const,
    // Every worker runs the same build: the summed scrape says 1, not the number of workers.
    aggregator: "first",
    registers,
  });
  buildInfo.set({ version: gatewayVersion(), node_version: process.version }, 1);
  return {
    requestDuration,
    backendRequestDuration,
    backendErrors,
    timeToFirstToken,
    fallbacks: fallbackCount,
    targetRequests,
    watched,
    backendRetries,
    cells,
  };
}

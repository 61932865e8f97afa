import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { collectDefaultMetrics, Counter, Gauge, Histogram, type LabelValues, Registry } from "prom-client";
import { UpstreamClientError, UpstreamHttpError, UpstreamInvalidResponseError, UpstreamTimeoutError, UpstreamUnreachableError } from "../errors";
import type { Usage } from "../schemas/chat";

/** The `backend` label of requests refused before routing (bad JSON, failed validation, wrong method). */
export const NO_BACKEND = "none";

/** Why a backend call failed: the `reason` label of `gateway_backend_errors_total`, a closed set. */
export const BACKEND_ERROR_REASONS = ["timeout", "connection", "http_status", "invalid_response", "stream_interrupted"] as const;
export type BackendErrorReason = (typeof BACKEND_ERROR_REASONS)[number];

/**
 * Seconds. LLM answers take from milliseconds (the echo backend, a cache hit, the gateway's own overhead)
 * to minutes (long generations), so the buckets span both ends; 300 s covers the default 60 s timeout with room.
 */
export const LATENCY_BUCKETS: readonly number[] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];

type RequestLabel = "backend" | "code" | "stream";

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
  readonly registry: Registry;
  readonly requests: Counter<RequestLabel>;
  readonly requestDuration: Histogram<"backend" | "stream">;
  /** Time spent waiting on the backend; `requestDuration` minus this is the gateway's own overhead. */
  readonly backendRequestDuration: Histogram<"backend">;
  readonly backendErrors: Counter<"backend" | "reason">;
  readonly tokens: Counter<"backend" | "type">;
  readonly inFlight: Gauge<"backend">;
  readonly timeToFirstToken: Histogram<"backend">;
  /** Requests for `from` handed to its fallback `to`; only configured pairs ever appear. */
  readonly fallbacks: Counter<"from" | "to">;
  /** 1 while the backend's circuit is closed, 0 while it is open or waiting on a trial request. */
  readonly backendUp: Gauge<"backend">;
  readonly backendRetries: Counter<"backend">;
  readonly buildInfo: Gauge<"version" | "node_version">;
  /** What the request path counted into `requests`, `tokens` and `inFlight`, handed over at scrape time. */
  readonly cells: {
    readonly requests: ScrapedCells<RequestLabel>;
    readonly tokens: ScrapedCells<"backend" | "type">;
    readonly inFlight: ScrapedCells<"backend">;
  };
  /**
   * The request-level series for one `backend` label value, made once and cached. Callers pass only a
   * configured backend's name or NO_BACKEND, never client input, so the number of series stays bounded.
   */
  request(backend: string): RequestSeries;
  /** The backend-level series for one configured backend, made once and cached. */
  backend(name: string): BackendSeries;
  /** A request for `from` moved on to its configured fallback `to`. */
  fallback(from: string, to: string): void;
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
  const registers = [registry];
  const cells = { requests: new ScrapedCells<RequestLabel>(), tokens: new ScrapedCells<"backend" | "type">(), inFlight: new ScrapedCells<"backend">() };
  const requests = new Counter({
    name: "gateway_requests_total",
    help: "Chat completion requests answered, by the backend that served them ('none' when refused before routing), HTTP status (499: the client left) and streaming.",
    labelNames: ["backend", "code", "stream"] as const,
    registers,
    collect() {
      cells.requests.addTo(this);
    },
  });
  const requestDuration = new Histogram({
    name: "gateway_request_duration_seconds",
    help: "Time from a chat completion request's arrival to its last byte (or the client leaving), in seconds.",
    labelNames: ["backend", "stream"] as const,
    buckets: [...LATENCY_BUCKETS],
    registers,
  });
  const backendRequestDuration = new Histogram({
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
  const tokens = new Counter({
    name: "gateway_tokens_total",
    help: "Tokens in answered requests (the backend's usage, else the gateway's estimate), by type: prompt or completion.",
    labelNames: ["backend", "type"] as const,
    registers,
    collect() {
      cells.tokens.addTo(this);
    },
  });
  const inFlight = new Gauge({
    name: "gateway_in_flight_requests",
    help: "Requests routed to a backend and not yet answered by it.",
    labelNames: ["backend"] as const,
    registers,
    collect() {
      cells.inFlight.setOn(this);
    },
  });
  const timeToFirstToken = new Histogram({
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
  const backendUp = new Gauge({
    name: "gateway_backend_up",
    help: "1 while the backend's circuit breaker is closed (requests go to it); 0 while it is open or half-open (waiting on a trial request).",
    labelNames: ["backend"] as const,
    // Under WORKERS > 1 each worker has its own breaker: the summed scrape shows 0 when any of them is open.
    aggregator: "min",
    registers,
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

  const requestSeries = new Map<string, RequestSeries>();
  const backendSeries = new Map<string, BackendSeries>();
  const metrics: GatewayMetrics = {
    registry,
    requests,
    requestDuration,
    backendRequestDuration,
    backendErrors,
    tokens,
    inFlight,
    timeToFirstToken,
    fallbacks: fallbackCount,
    backendUp,
    backendRetries,
    buildInfo,
    cells,
    request(backend) {
      let series = requestSeries.get(backend);
      if (series === undefined) {
        series = new RequestSeries(metrics, backend);
        requestSeries.set(backend, series);
      }
      return series;
    },
    backend(name) {
      let series = backendSeries.get(name);
      if (series === undefined) {
        series = new BackendSeries(metrics, name);
        backendSeries.set(name, series);
      }
      return series;
    },
    fallback(from, to) {
      fallbackCount.inc({ from, to });
    },
  };
  for (const name of backendNames) {
    for (const status of BACKEND_STATUSES) metrics.request(name).zero(status);
    metrics.backend(name);
  }
  for (const [from, targets] of fallbacks) for (const to of targets) fallbackCount.inc({ from, to }, 0);
  metrics.request(NO_BACKEND).zero(400);
  return metrics;
}

/** One series' number, kept on the request path as a plain field (a count, or a gauge's level). */
export class Cell<L extends string> {
  value = 0;
  constructor(readonly labels: LabelValues<L>) {}
}

/**
 * The cells of one counter or gauge, handed to prom-client by the metric's `collect()` hook on every
 * scrape: prom-client hashes the label object on every `inc()`, and the per-request updates were about a
 * tenth of the gateway's CPU per request. Every cell's series exists from the first scrape, at 0 or more.
 */
export class ScrapedCells<L extends string> {
  private readonly cells: Cell<L>[] = [];

  add(labels: LabelValues<L>): Cell<L> {
    const cell = new Cell(labels);
    this.cells.push(cell);
    return cell;
  }

  /** For a counter: adds what each cell counted since the last scrape, and starts it again from 0. */
  addTo(counter: Counter<L>): void {
    for (const cell of this.cells) {
      const count = cell.value;
      cell.value = 0;
      // An upstream reporting absurd usage (1e308 tokens) must not make every later scrape throw.
      counter.inc(cell.labels, Number.isFinite(count) ? count : 0);
    }
  }

  /** For a gauge: sets each series to its cell's current value. */
  setOn(gauge: Gauge<L>): void {
    for (const cell of this.cells) gauge.set(cell.labels, cell.value);
  }
}

/**
 * `gateway_requests_total` and `gateway_request_duration_seconds` for one `backend` value. The count cells
 * and label objects are made once per status and reused, so recording a request allocates nothing.
 */
export class RequestSeries {
  /** Keyed by `status * 2 + (stream ? 1 : 0)`; HTTP statuses are 100-999, so this stays small. */
  private readonly counts = new Map<number, Cell<RequestLabel>>();
  private readonly durationLabels: Readonly<Record<"true" | "false", LabelValues<"backend" | "stream">>>;

  constructor(
    private readonly metrics: GatewayMetrics,
    readonly backend: string,
  ) {
    this.durationLabels = { false: { backend, stream: "false" }, true: { backend, stream: "true" } };
    metrics.requestDuration.zero(this.durationLabels.false);
  }

  /** Makes the count for `status` (non-streamed) exist at 0. */
  zero(status: number): void {
    this.countFor(status, false);
  }

  /** One finished request: `status` is 499 when the client left before the answer was complete. */
  observe(status: number, stream: boolean, seconds: number): void {
    this.countFor(status, stream).value++;
    this.metrics.requestDuration.observe(this.durationLabels[stream ? "true" : "false"], seconds);
  }

  private countFor(status: number, stream: boolean): Cell<RequestLabel> {
    const key = status * 2 + (stream ? 1 : 0);
    let cell = this.counts.get(key);
    if (cell === undefined) {
      cell = this.metrics.cells.requests.add({ backend: this.backend, code: String(status), stream: stream ? "true" : "false" });
      this.counts.set(key, cell);
    }
    return cell;
  }
}

/** The series about one backend's calls: time waiting on it, its failures, its tokens, calls in flight. */
export class BackendSeries {
  private readonly labels: LabelValues<"backend">;
  private readonly errorLabels: Readonly<Record<BackendErrorReason, LabelValues<"backend" | "reason">>>;
  private readonly promptTokens: Cell<"backend" | "type">;
  private readonly completionTokens: Cell<"backend" | "type">;
  private readonly inFlight: Cell<"backend">;

  constructor(
    private readonly metrics: GatewayMetrics,
    readonly backend: string,
  ) {
    this.labels = { backend };
    this.promptTokens = metrics.cells.tokens.add({ backend, type: "prompt" });
    this.completionTokens = metrics.cells.tokens.add({ backend, type: "completion" });
    this.inFlight = metrics.cells.inFlight.add(this.labels);
    this.errorLabels = {
      timeout: { backend, reason: "timeout" },
      connection: { backend, reason: "connection" },
      http_status: { backend, reason: "http_status" },
      invalid_response: { backend, reason: "invalid_response" },
      stream_interrupted: { backend, reason: "stream_interrupted" },
    };
    metrics.backendUp.set(this.labels, 1);
    metrics.backendRetries.inc(this.labels, 0);
    metrics.backendRequestDuration.zero(this.labels);
    metrics.timeToFirstToken.zero(this.labels);
    for (const reason of BACKEND_ERROR_REASONS) metrics.backendErrors.inc(this.errorLabels[reason], 0);
  }

  callStarted(): void {
    this.inFlight.value++;
  }

  /** The backend answered or failed after `seconds`; `error` is what it threw, if anything. */
  callEnded(seconds: number, error?: unknown): void {
    this.inFlight.value--;
    this.metrics.backendRequestDuration.observe(this.labels, seconds);
    if (error === undefined) return;
    const reason = backendErrorReason(error);
    if (reason !== undefined) this.metrics.backendErrors.inc(this.errorLabels[reason]);
  }

  countTokens(usage: Usage): void {
    this.promptTokens.value += usage.prompt_tokens;
    this.completionTokens.value += usage.completion_tokens;
  }

  /** For streamed answers: seconds from the request's arrival to the first token. */
  firstToken(seconds: number): void {
    this.metrics.timeToFirstToken.observe(this.labels, seconds);
  }

  /** Whether the backend's circuit is closed: `gateway_backend_up`. */
  setUp(up: boolean): void {
    this.metrics.backendUp.set(this.labels, up ? 1 : 0);
  }

  /** A call is being repeated after a retryable failure. */
  retried(): void {
    this.metrics.backendRetries.inc(this.labels);
  }

  /** A stream that broke after it started: the status was already sent, so only this counter sees it. */
  streamInterrupted(): void {
    this.metrics.backendErrors.inc(this.errorLabels.stream_interrupted);
  }
}

/**
 * The `reason` for a backend failure, or undefined when it was not the backend's failure: a client that
 * left (ClientClosedError) or a bug in the gateway (which the request counter shows as a 500).
 */
export function backendErrorReason(error: unknown): BackendErrorReason | undefined {
  if (error instanceof UpstreamTimeoutError) return "timeout";
  if (error instanceof UpstreamUnreachableError) return "connection";
  if (error instanceof UpstreamHttpError || error instanceof UpstreamClientError) return "http_status";
  if (error instanceof UpstreamInvalidResponseError) return "invalid_response";
  return undefined;
}

/** Read once per process: the version is the same for every app, and the file never changes under us. */
let cachedVersion: string | undefined;

/** `version` from the nearest package.json above this file; the same walk works from src/ (tests) and dist/. */
export function gatewayVersion(): string {
  cachedVersion ??= findPackageVersion(__dirname);
  return cachedVersion;
}

const MAX_PARENT_DIRECTORIES = 8;

function findPackageVersion(start: string): string {
  let directory = start;
  for (let depth = 0; depth < MAX_PARENT_DIRECTORIES; depth++) {
    const version = versionIn(join(directory, "package.json"));
    if (version !== undefined) return version;
    const parent = dirname(directory);
    if (parent === directory) break;
    directory = parent;
  }
  return "unknown";
}

function versionIn(file: string): string | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, "utf8"));
  } catch {
    return undefined; // no package.json here (or not JSON): keep walking up
  }
  if (typeof parsed !== "object" || parsed === null) return undefined;
  const version = (parsed as Record<string, unknown>).version;
  return typeof version === "string" && version !== "" ? version : undefined;
}

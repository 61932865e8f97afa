import type { Counter, LabelValues } from "prom-client";
import { BACKEND_FAULTS, type BackendFault, GatewayError } from "../errors";
import type { Usage } from "../schemas/chat";
import type { Cell, CellHistogram, HistogramCell, ScrapedCells } from "./metric-cells";

export type RequestLabel = "backend" | "code" | "stream" | "endpoint";

/** The `endpoint` label: which API a request called (bounded: one value per route the gateway serves). */
export type Endpoint = "chat" | "completions" | "embeddings" | "responses";

/** The prom-client metrics the series write to, and the cells the request path counts into. */
export interface Instruments {
  readonly requestDuration: CellHistogram<"backend" | "stream" | "endpoint">;
  /** Time spent waiting on the backend; `requestDuration` minus this is the gateway's own overhead. */
  readonly backendRequestDuration: CellHistogram<"backend">;
  readonly backendErrors: Counter<"backend" | "reason">;
  readonly timeToFirstToken: CellHistogram<"backend">;
  readonly backendRetries: Counter<"backend">;
  /** What the request path counted into `gateway_requests_total`, `gateway_tokens_total` and `gateway_in_flight_requests`, handed over at scrape time. */
  readonly cells: {
    readonly requests: ScrapedCells<RequestLabel>;
    readonly tokens: ScrapedCells<"backend" | "type" | "endpoint">;
    readonly inFlight: ScrapedCells<"backend">;
  };
}

/**
 * `gateway_requests_total` and `gateway_request_duration_seconds` for one `backend` value. The count cells
 * and label objects are made once per status and reused, so recording a request allocates nothing.
 */
export class RequestSeries {
  /** Keyed by `status * 2 + (stream ? 1 : 0)`; HTTP statuses are 100-999, so this stays small. */
  private readonly counts = new Map<number, Cell<RequestLabel>>();
  private readonly duration: HistogramCell;
  /** Made on the first streamed request: a backend that never streams shows no stream="true" series. */
  private streamDuration: HistogramCell | undefined;

  constructor(
    private readonly instruments: Instruments,
    readonly backend: string,
    readonly endpoint: Endpoint = "chat",
  ) {
    this.duration = instruments.requestDuration.cell({ backend, stream: "false", endpoint });
  }

  /** Makes the count for `status` (non-streamed) exist at 0. */
  zero(status: number): void {
    this.countFor(status, false);
  }

  /** One finished request: `status` is 499 when the client left before the answer was complete. */
  observe(status: number, stream: boolean, seconds: number): void {
    this.countFor(status, stream).value++;
    const cell = stream
      ? (this.streamDuration ??= this.instruments.requestDuration.cell({
          backend: this.backend,
          stream: "true",
          endpoint: this.endpoint,
        }))
      : this.duration;
    cell.observe(seconds);
  }

  private countFor(status: number, stream: boolean): Cell<RequestLabel> {
    const key = status * 2 + (stream ? 1 : 0);
    let cell = this.counts.get(key);
    if (cell === undefined) {
      cell = this.instruments.cells.requests.add({
        backend: this.backend,
        code: String(status),
        stream: stream ? "true" : "false",
        endpoint: this.endpoint,
      });
      this.counts.set(key, cell);
    }
    return cell;
  }
}

type TokenLabel = "backend" | "type" | "endpoint";

/** The series about one backend's calls: time waiting on it, its failures, its tokens, calls in flight. */
export class BackendSeries {
  private readonly labels: LabelValues<"backend">;
  private readonly errorLabels: Readonly<Record<BackendFault, LabelValues<"backend" | "reason">>>;
  /** Prompt and completion token cells per endpoint, chat's made at start-up, the others on first use. */
  private readonly tokenCells = new Map<Endpoint, readonly [Cell<TokenLabel>, Cell<TokenLabel>]>();
  private readonly inFlight: Cell<"backend">;
  private readonly duration: HistogramCell;
  private readonly firstTokenTime: HistogramCell;

  constructor(
    private readonly instruments: Instruments,
    readonly backend: string,
  ) {
    this.labels = { backend };
    this.tokensOf("chat");
    this.inFlight = instruments.cells.inFlight.add(this.labels);
    this.errorLabels = {
      timeout: { backend, reason: "timeout" },
      connection: { backend, reason: "connection" },
      http_status: { backend, reason: "http_status" },
      invalid_response: { backend, reason: "invalid_response" },
      stream_interrupted: { backend, reason: "stream_interrupted" },
    };
    instruments.backendRetries.inc(this.labels, 0);
    this.duration = instruments.backendRequestDuration.cell(this.labels);
    this.firstTokenTime = instruments.timeToFirstToken.cell(this.labels);
    for (const reason of BACKEND_FAULTS) instruments.backendErrors.inc(this.errorLabels[reason], 0);
  }

  callStarted(): void {
    this.inFlight.value++;
  }

  /** The backend answered or failed after `seconds`; `error` is what it threw, if anything. */
  callEnded(seconds: number, error?: unknown): void {
    this.inFlight.value--;
    this.duration.observe(seconds);
    if (error === undefined) return;
    const reason = backendErrorReason(error);
    if (reason !== undefined) this.instruments.backendErrors.inc(this.errorLabels[reason]);
  }

  countTokens(usage: Usage, endpoint: Endpoint = "chat"): void {
    const [prompt, completion] = this.tokensOf(endpoint);
    prompt.value += usage.prompt_tokens;
    completion.value += usage.completion_tokens;
  }

  private tokensOf(endpoint: Endpoint): readonly [Cell<TokenLabel>, Cell<TokenLabel>] {
    let cells = this.tokenCells.get(endpoint);
    if (cells === undefined) {
      const { backend } = this;
      const tokens = this.instruments.cells.tokens;
      cells = [
        tokens.add({ backend, type: "prompt", endpoint }),
        tokens.add({ backend, type: "completion", endpoint }),
      ];
      this.tokenCells.set(endpoint, cells);
    }
    return cells;
  }

  /** For streamed answers: seconds from the request's arrival to the first token. */
  firstToken(seconds: number): void {
    this.firstTokenTime.observe(seconds);
  }

  /** A call is being repeated after a retryable failure. */
  retried(): void {
    this.instruments.backendRetries.inc(this.labels);
  }

  /** A stream that broke after it started: the status was already sent, so only this counter sees it. */
  streamInterrupted(): void {
    this.instruments.backendErrors.inc(this.errorLabels.stream_interrupted);
  }
}

/** `gateway_target_requests_total` for one target: a counter child per status, made on first use. */
export class TargetSeries {
  private readonly byCode = new Map<number, Counter.Internal>();

  constructor(
    private readonly requests: Counter<"backend" | "target" | "code">,
    private readonly backend: string,
    private readonly target: string,
  ) {}

  /** One call to the target ended: the upstream's status, or the gateway's for a failure without one. */
  answered(code: number): void {
    let child = this.byCode.get(code);
    if (child === undefined) {
      child = this.requests.labels({ backend: this.backend, target: this.target, code: String(code) });
      this.byCode.set(code, child);
    }
    child.inc();
  }

  /** Drops every count of this target from the scrape (it left the backend). */
  remove(): void {
    // 200 too: the scrape makes it at 0 for every target, called or not.
    for (const code of new Set([200, ...this.byCode.keys()]))
      this.requests.remove({ backend: this.backend, target: this.target, code: String(code) });
    this.byCode.clear();
  }
}

/**
 * The `reason` for a failed backend call: the error's own `fault`. Undefined when no backend call failed: a
 * client that left (ClientClosedError) or a bug in the gateway (which the request counter shows as a 500).
 */
export function backendErrorReason(error: unknown): BackendFault | undefined {
  return error instanceof GatewayError ? error.fault : undefined;
}

import { Registry } from "prom-client";
import type { Backend, BackendCall, BackendResult, StreamEvent } from "../../../gateway/src/backends/backend";
import { singleTarget } from "../../../gateway/src/balancing/pool";
import * as errors from "../../../gateway/src/errors";
import { type BackendFault, CircuitOpenError, GatewayError } from "../../../gateway/src/errors";
import { backendErrorReason } from "../../../gateway/src/observability/metric-series";
import { createMetrics } from "../../../gateway/src/observability/metrics";
import { InferenceService } from "../../../gateway/src/services/inference";
import { judge } from "../../../gateway/src/services/resilience";
import { parseExposition, total } from "../../support/exposition";

/** One or more instances of every GatewayError subclass the module exports, keyed by class name. */
const EXAMPLES: Readonly<Record<string, readonly GatewayError[]>> = {
  InvalidRequestError: [new errors.InvalidRequestError("bad")],
  PayloadTooLargeError: [new errors.PayloadTooLargeError(10)],
  NotFoundError: [new errors.NotFoundError("GET", "/x")],
  MethodNotAllowedError: [new errors.MethodNotAllowedError("GET", "/x", ["POST"])],
  UpstreamClientError: [
    new errors.UpstreamClientError("b", 429, "slow down"),
    new errors.UpstreamClientError("b", 429, "quota", { "x-should-retry": "false" }),
    new errors.UpstreamClientError("b", 400, "bad"),
  ],
  UpstreamHttpError: [new errors.UpstreamHttpError("b", 500, "bug"), new errors.UpstreamHttpError("b", 503, "busy")],
  UpstreamUnreachableError: [new errors.UpstreamUnreachableError("b", "ECONNREFUSED")],
  UpstreamInvalidResponseError: [new errors.UpstreamInvalidResponseError("b", "not JSON")],
  UpstreamStreamError: [new errors.UpstreamStreamError("b", "the stream ended before [DONE]")],
  UpstreamTimeoutError: [new errors.UpstreamTimeoutError("b", 1)],
  CircuitOpenError: [new errors.CircuitOpenError("b", 3)],
  ResponseBudgetExhaustedError: [new errors.ResponseBudgetExhaustedError(100)],
  LoopDetectedError: [new errors.LoopDetectedError("loop")],
  AuthenticationError: [new errors.AuthenticationError(true)],
  BackendNotAllowedError: [new errors.BackendNotAllowedError("k", "b")],
  UnsupportedEndpointError: [new errors.UnsupportedEndpointError("b", "embeddings")],
  RateLimitError: [new errors.RateLimitError("requests", 10, "key 'k'", 5)],
  TooManyConcurrentRequestsError: [new errors.TooManyConcurrentRequestsError("busy")],
  LimitsUnavailableError: [new errors.LimitsUnavailableError()],
  UnsupportedMediaTypeError: [new errors.UnsupportedMediaTypeError("text/plain")],
  RequestTimeoutError: [new errors.RequestTimeoutError(5)],
  UnsupportedEncodingError: [new errors.UnsupportedEncodingError("br")],
  ServiceUnavailableError: [new errors.ServiceUnavailableError("down")],
  InternalError: [new errors.InternalError()],
  ClientClosedError: [new errors.ClientClosedError()],
};

/** The reason each upstream failure is counted under in gateway_backend_errors_total. */
const UPSTREAM_REASONS: Readonly<Record<string, BackendFault>> = {
  UpstreamClientError: "http_status",
  UpstreamHttpError: "http_status",
  UpstreamUnreachableError: "connection",
  UpstreamInvalidResponseError: "invalid_response",
  UpstreamStreamError: "stream_interrupted",
  UpstreamTimeoutError: "timeout",
};

/** Every GatewayError subclass the errors module exports, by name: what the tables above must cover. */
const exported = Object.entries(errors)
  .filter(([, value]) => typeof value === "function" && value.prototype instanceof GatewayError)
  .map(([name]) => name)
  .sort();
const upstream = exported.filter((name) => name.startsWith("Upstream"));

function examplesOf(name: string): readonly GatewayError[] {
  const examples = EXAMPLES[name] ?? [];
  if (examples.length === 0) throw new Error(`no example of ${name}`);
  return examples;
}

/** Throws its one failure from every call, before any stream event. */
class FailingBackend implements Backend {
  readonly name = "b";
  readonly type = "failing";
  readonly target = "in-process";
  readonly pool = singleTarget(undefined);
  constructor(private readonly failure: Error) {}
  async complete(_call: BackendCall): Promise<BackendResult> {
    throw this.failure;
  }
  async *stream(_call: BackendCall): AsyncGenerator<StreamEvent> {
    throw this.failure;
  }
  async close(): Promise<void> {}
}

const request = { messages: [{ role: "user" as const, content: "Hello world" }] };

describe("the example tables", () => {
  it("cover every GatewayError subclass the errors module exports", () => {
    expect(Object.keys(EXAMPLES).sort()).toEqual(exported);
    expect(Object.keys(UPSTREAM_REASONS).sort()).toEqual(upstream);
    for (const [name, examples] of Object.entries(EXAMPLES))
      for (const error of examples) expect(error.constructor.name).toBe(name);
  });
});

describe.each(upstream.map((name) => [name]))("%s", (name) => {
  it.each([["complete"], ["stream before its first event"]])(
    "is counted in gateway_backend_errors_total under its reason (%s)",
    async (how) => {
      for (const error of examplesOf(name)) {
        const metrics = createMetrics(new Registry(), ["b"]);
        const backend = new FailingBackend(error);
        const service = new InferenceService([backend], backend, metrics);
        const options = { requestId: "r", signal: new AbortController().signal, startedAt: performance.now() };
        const call =
          how === "complete"
            ? service.complete(backend, request, options)
            : service.openStream(backend, { ...request, stream: true }, options);
        await expect(call).rejects.toBe(error);
        const samples = parseExposition(await metrics.registry.metrics());
        expect(
          total(samples, "gateway_backend_errors_total", { backend: "b", reason: UPSTREAM_REASONS[name] ?? "" }),
        ).toBe(1);
        expect(total(samples, "gateway_backend_errors_total", { backend: "b" })).toBe(1);
      }
    },
  );
});

describe("judge() and gateway_backend_errors_total agree", () => {
  it.each([
    ...exported.flatMap((name) =>
      examplesOf(name).map((error): [string, unknown] => [`${name} (${error.message})`, error]),
    ),
    ["a plain Error", new Error("bug")],
  ])("%s", (_what, error) => {
    const verdict = judge(error);
    const reason = backendErrorReason(error);
    // What counts against the backend's circuit, or is worth calling it again for, is a failed call the metric counts.
    if (verdict.health === "failure" || verdict.retry) expect(reason).toBeDefined();
    // A fallback after a failure nobody counted is only right when no call was made at all.
    if (verdict.fallBack && reason === undefined) expect(error).toBeInstanceOf(CircuitOpenError);
    // The metric counts only failed calls: a backend found healthy by the breaker failed only by refusing the request.
    if (reason !== undefined && verdict.health !== "failure") expect(reason).toBe("http_status");
  });
});

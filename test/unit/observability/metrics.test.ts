import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Registry } from "prom-client";
import {
  ClientClosedError,
  InternalError,
  InvalidRequestError,
  UpstreamClientError,
  UpstreamHttpError,
  UpstreamInvalidResponseError,
  UpstreamTimeoutError,
  UpstreamUnreachableError,
} from "../../../gateway/src/errors";
import { backendErrorReason, createMetrics, gatewayVersion, LATENCY_BUCKETS, NO_BACKEND } from "../../../gateway/src/observability/metrics";
import { metricTypes, parseExposition, select, total } from "../../support/exposition";

async function scrape(registry: Registry) {
  const text = await registry.metrics();
  return { text, samples: parseExposition(text) };
}

describe("createMetrics", () => {
  it("registers every contract metric with its type", async () => {
    const metrics = createMetrics(new Registry(), ["local"]);
    const types = metricTypes(await metrics.registry.metrics());
    expect(Object.fromEntries([...types].filter(([name]) => name.startsWith("gateway_")))).toEqual({
      gateway_requests_total: "counter",
      gateway_request_duration_seconds: "histogram",
      gateway_backend_request_duration_seconds: "histogram",
      gateway_backend_errors_total: "counter",
      gateway_tokens_total: "counter",
      gateway_in_flight_requests: "gauge",
      gateway_time_to_first_token_seconds: "histogram",
      gateway_fallbacks_total: "counter",
      gateway_backend_up: "gauge",
      gateway_backend_retries_total: "counter",
      gateway_build_info: "gauge",
    });
  });

  it("includes prom-client's default process and Node.js metrics", async () => {
    const types = metricTypes(await createMetrics().registry.metrics());
    expect(types.get("process_cpu_user_seconds_total")).toBe("counter");
    expect(types.get("process_resident_memory_bytes")).toBe("gauge");
    expect(types.get("nodejs_eventloop_lag_seconds")).toBe("gauge");
    expect(types.get("nodejs_heap_size_used_bytes")).toBe("gauge");
  });

  it("uses a new Registry per call, so two apps in one process never collide", () => {
    const first = createMetrics();
    const second = createMetrics();
    expect(first.registry).not.toBe(second.registry);
  });

  it("uses the Registry it is given", () => {
    const registry = new Registry();
    expect(createMetrics(registry).registry).toBe(registry);
  });

  it("reports build info: 1, with package.json's version and the Node.js version", async () => {
    const pkg = JSON.parse(readFileSync(join(__dirname, "../../../package.json"), "utf8")) as { version: string };
    const { samples } = await scrape(createMetrics().registry);
    expect(gatewayVersion()).toBe(pkg.version);
    expect(select(samples, "gateway_build_info")).toEqual([{ name: "gateway_build_info", labels: { version: pkg.version, node_version: process.version }, value: 1 }]);
  });

  it("buckets durations from a millisecond to five minutes", async () => {
    expect(LATENCY_BUCKETS[0]).toBe(0.001);
    expect(LATENCY_BUCKETS[LATENCY_BUCKETS.length - 1]).toBe(300);
    const { samples } = await scrape(createMetrics(new Registry(), ["local"]).registry);
    const bounds = select(samples, "gateway_request_duration_seconds_bucket", { backend: "local" }).map((sample) => sample.labels.le);
    expect(bounds).toEqual([...LATENCY_BUCKETS.map(String), "+Inf"]);
  });
});

describe("series created at start-up", () => {
  it("exist at 0 for every configured backend", async () => {
    const { samples } = await scrape(createMetrics(new Registry(), ["local", "remote"]).registry);
    for (const backend of ["local", "remote"]) {
      expect(select(samples, "gateway_requests_total", { backend })).toEqual(
        ["200", "502", "503", "504"].map((code) => ({ name: "gateway_requests_total", labels: { backend, code, stream: "false" }, value: 0 })),
      );
      expect(select(samples, "gateway_request_duration_seconds_count", { backend })).toEqual([
        { name: "gateway_request_duration_seconds_count", labels: { backend, stream: "false" }, value: 0 },
      ]);
      expect(total(samples, "gateway_backend_request_duration_seconds_count", { backend })).toBe(0);
      expect(select(samples, "gateway_backend_request_duration_seconds_count", { backend })).toHaveLength(1);
      expect(select(samples, "gateway_time_to_first_token_seconds_count", { backend })).toHaveLength(1);
      expect(select(samples, "gateway_in_flight_requests", { backend })).toEqual([{ name: "gateway_in_flight_requests", labels: { backend }, value: 0 }]);
      expect(select(samples, "gateway_tokens_total", { backend }).map((sample) => [sample.labels.type, sample.value])).toEqual([
        ["prompt", 0],
        ["completion", 0],
      ]);
      expect(select(samples, "gateway_backend_errors_total", { backend }).map((sample) => [sample.labels.reason, sample.value])).toEqual([
        ["timeout", 0],
        ["connection", 0],
        ["http_status", 0],
        ["invalid_response", 0],
        ["stream_interrupted", 0],
      ]);
    }
  });

  it("exist at 0 for requests refused before routing, and only the request-level ones", async () => {
    const { samples } = await scrape(createMetrics(new Registry(), ["local"]).registry);
    expect(select(samples, "gateway_requests_total", { backend: NO_BACKEND })).toEqual([
      { name: "gateway_requests_total", labels: { backend: "none", code: "400", stream: "false" }, value: 0 },
    ]);
    expect(select(samples, "gateway_request_duration_seconds_count", { backend: NO_BACKEND })).toHaveLength(1);
    for (const name of ["gateway_backend_request_duration_seconds_count", "gateway_backend_errors_total", "gateway_tokens_total", "gateway_in_flight_requests"]) {
      expect(select(samples, name, { backend: NO_BACKEND })).toEqual([]);
    }
  });
});

describe("resilience series", () => {
  it("show every backend up, with no retries, from start-up", async () => {
    const { samples } = await scrape(createMetrics(new Registry(), ["local", "remote"]).registry);
    expect(select(samples, "gateway_backend_up").map((sample) => [sample.labels.backend, sample.value])).toEqual([
      ["local", 1],
      ["remote", 1],
    ]);
    expect(select(samples, "gateway_backend_retries_total").map((sample) => [sample.labels.backend, sample.value])).toEqual([
      ["local", 0],
      ["remote", 0],
    ]);
  });

  it("exist at 0 for each configured fallback pair, and only those", async () => {
    const metrics = createMetrics(new Registry(), ["a", "b", "c"], new Map([["a", ["b", "c"]], ["b", []]]));
    metrics.fallback("a", "c");
    const { samples } = await scrape(metrics.registry);
    expect(select(samples, "gateway_fallbacks_total").map((sample) => [sample.labels.from, sample.labels.to, sample.value])).toEqual([
      ["a", "b", 0],
      ["a", "c", 1],
    ]);
  });

  it("follow the circuit and count retries", async () => {
    const metrics = createMetrics(new Registry(), ["remote"]);
    metrics.backend("remote").setUp(false);
    metrics.backend("remote").retried();
    const { samples } = await scrape(metrics.registry);
    expect(total(samples, "gateway_backend_up", { backend: "remote" })).toBe(0);
    expect(total(samples, "gateway_backend_retries_total", { backend: "remote" })).toBe(1);
  });
});

describe("RequestSeries", () => {
  it("counts a request by status and stream and times it", async () => {
    const metrics = createMetrics(new Registry(), ["local"]);
    metrics.request("local").observe(200, false, 0.003);
    metrics.request("local").observe(200, false, 0.2);
    metrics.request("local").observe(499, false, 1.5);
    const { samples } = await scrape(metrics.registry);
    expect(total(samples, "gateway_requests_total", { backend: "local", code: "200", stream: "false" })).toBe(2);
    expect(total(samples, "gateway_requests_total", { backend: "local", code: "499", stream: "false" })).toBe(1);
    expect(total(samples, "gateway_request_duration_seconds_count", { backend: "local", stream: "false" })).toBe(3);
    expect(total(samples, "gateway_request_duration_seconds_sum", { backend: "local" })).toBeCloseTo(1.703, 6);
    expect(total(samples, "gateway_request_duration_seconds_bucket", { backend: "local", le: "0.005" })).toBe(1);
    expect(total(samples, "gateway_request_duration_seconds_bucket", { backend: "local", le: "+Inf" })).toBe(3);
  });

  it("labels streamed requests stream=\"true\"", async () => {
    const metrics = createMetrics(new Registry(), ["local"]);
    metrics.request("local").observe(200, true, 0.5);
    const { samples } = await scrape(metrics.registry);
    expect(total(samples, "gateway_requests_total", { backend: "local", stream: "true" })).toBe(1);
    expect(total(samples, "gateway_request_duration_seconds_count", { backend: "local", stream: "true" })).toBe(1);
  });

  it("is made once per backend label value", () => {
    const metrics = createMetrics(new Registry(), ["local"]);
    expect(metrics.request("local")).toBe(metrics.request("local"));
    expect(metrics.backend("local")).toBe(metrics.backend("local"));
  });
});

describe("BackendSeries", () => {
  it("tracks calls in flight", async () => {
    const metrics = createMetrics(new Registry(), ["remote"]);
    const series = metrics.backend("remote");
    series.callStarted();
    series.callStarted();
    expect(total((await scrape(metrics.registry)).samples, "gateway_in_flight_requests", { backend: "remote" })).toBe(2);
    series.callEnded(0.1);
    series.callEnded(0.2, new UpstreamTimeoutError("remote", 1));
    const { samples } = await scrape(metrics.registry);
    expect(total(samples, "gateway_in_flight_requests", { backend: "remote" })).toBe(0);
    expect(total(samples, "gateway_backend_request_duration_seconds_count", { backend: "remote" })).toBe(2);
    expect(total(samples, "gateway_backend_request_duration_seconds_sum", { backend: "remote" })).toBeCloseTo(0.3, 6);
  });

  it("counts a failed call under its reason", async () => {
    const metrics = createMetrics(new Registry(), ["remote"]);
    metrics.backend("remote").callStarted();
    metrics.backend("remote").callEnded(0.1, new UpstreamUnreachableError("remote", "ECONNREFUSED"));
    metrics.backend("remote").streamInterrupted();
    const { samples } = await scrape(metrics.registry);
    expect(total(samples, "gateway_backend_errors_total", { backend: "remote", reason: "connection" })).toBe(1);
    expect(total(samples, "gateway_backend_errors_total", { backend: "remote", reason: "stream_interrupted" })).toBe(1);
    expect(total(samples, "gateway_backend_errors_total", { backend: "remote" })).toBe(2);
  });

  it("does not count a client that left as a backend error", async () => {
    const metrics = createMetrics(new Registry(), ["remote"]);
    metrics.backend("remote").callStarted();
    metrics.backend("remote").callEnded(0.1, new ClientClosedError());
    const { samples } = await scrape(metrics.registry);
    expect(total(samples, "gateway_backend_errors_total", { backend: "remote" })).toBe(0);
    expect(total(samples, "gateway_backend_request_duration_seconds_count", { backend: "remote" })).toBe(1);
  });

  it("counts prompt and completion tokens", async () => {
    const metrics = createMetrics(new Registry(), ["local"]);
    metrics.backend("local").countTokens({ prompt_tokens: 5, completion_tokens: 7, total_tokens: 12 });
    metrics.backend("local").countTokens({ prompt_tokens: 1, completion_tokens: 2, total_tokens: 3 });
    const { samples } = await scrape(metrics.registry);
    expect(total(samples, "gateway_tokens_total", { backend: "local", type: "prompt" })).toBe(6);
    expect(total(samples, "gateway_tokens_total", { backend: "local", type: "completion" })).toBe(9);
  });

  it("times the first token of streamed answers", async () => {
    const metrics = createMetrics(new Registry(), ["local"]);
    metrics.backend("local").firstToken(0.05);
    const { samples } = await scrape(metrics.registry);
    expect(total(samples, "gateway_time_to_first_token_seconds_count", { backend: "local" })).toBe(1);
  });
});

describe("counts kept on the request path and handed to prom-client at scrape time", () => {
  it("add up across scrapes: each scrape adds only what was counted since the one before", async () => {
    const metrics = createMetrics(new Registry(), ["local"]);
    const series = metrics.request("local");
    series.observe(200, false, 0.01);
    series.observe(200, false, 0.01);
    const requests = (samples: ReturnType<typeof parseExposition>) => total(samples, "gateway_requests_total", { backend: "local", code: "200", stream: "false" });
    expect(requests((await scrape(metrics.registry)).samples)).toBe(2);
    expect(requests((await scrape(metrics.registry)).samples)).toBe(2);
    series.observe(200, false, 0.01);
    metrics.backend("local").countTokens({ prompt_tokens: 3, completion_tokens: 4, total_tokens: 7 });
    const { samples } = await scrape(metrics.registry);
    expect(requests(samples)).toBe(3);
    expect(total(samples, "gateway_tokens_total", { backend: "local" })).toBe(7);
  });

  it("are what prom-client's own API reads too (get(), as the cluster aggregator does)", async () => {
    const metrics = createMetrics(new Registry(), ["local"]);
    metrics.request("local").observe(502, true, 0.01);
    metrics.backend("local").callStarted();
    const counted = (await metrics.requests.get()).values.find((value) => value.labels.code === "502" && value.labels.stream === "true");
    expect(counted).toMatchObject({ value: 1, labels: { backend: "local", stream: "true" } });
    expect((await metrics.inFlight.get()).values).toEqual([expect.objectContaining({ value: 1, labels: { backend: "local" } })]);
  });

  it("drop an impossible token count instead of making every later scrape fail", async () => {
    const metrics = createMetrics(new Registry(), ["local"]);
    metrics.backend("local").countTokens({ prompt_tokens: Number.MAX_VALUE, completion_tokens: 1, total_tokens: 1 });
    metrics.backend("local").countTokens({ prompt_tokens: Number.MAX_VALUE, completion_tokens: 1, total_tokens: 1 });
    const first = await scrape(metrics.registry);
    expect(total(first.samples, "gateway_tokens_total", { backend: "local", type: "completion" })).toBe(2);
    metrics.backend("local").countTokens({ prompt_tokens: 5, completion_tokens: 1, total_tokens: 6 });
    const { samples } = await scrape(metrics.registry);
    expect(total(samples, "gateway_tokens_total", { backend: "local", type: "prompt" })).toBe(5);
  });
});

describe("backendErrorReason", () => {
  it.each([
    ["UpstreamTimeoutError", new UpstreamTimeoutError("b", 1), "timeout"],
    ["UpstreamUnreachableError", new UpstreamUnreachableError("b", "ECONNRESET"), "connection"],
    ["UpstreamHttpError", new UpstreamHttpError("b", 500, "boom"), "http_status"],
    ["UpstreamClientError", new UpstreamClientError("b", 429, "slow down"), "http_status"],
    ["UpstreamInvalidResponseError", new UpstreamInvalidResponseError("b", "not JSON"), "invalid_response"],
  ])("maps %s to %s", (_name, error, reason) => {
    expect(backendErrorReason(error)).toBe(reason);
  });

  it.each([
    ["ClientClosedError", new ClientClosedError()],
    ["InvalidRequestError", new InvalidRequestError("bad")],
    ["InternalError", new InternalError()],
    ["a plain Error", new Error("bug")],
    ["a non-error", "thrown string"],
  ])("does not blame the backend for %s", (_name, error) => {
    expect(backendErrorReason(error)).toBeUndefined();
  });
});

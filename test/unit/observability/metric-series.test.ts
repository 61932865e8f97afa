import { Registry } from "prom-client";
import {
  ClientClosedError,
  InternalError,
  InvalidRequestError,
  UpstreamClientError,
  UpstreamHttpError,
  UpstreamInvalidResponseError,
  UpstreamStreamError,
  UpstreamTimeoutError,
  UpstreamUnreachableError,
} from "../../../gateway/src/errors";
import { backendErrorReason } from "../../../gateway/src/observability/metric-series";
import { createMetrics } from "../../../gateway/src/observability/metrics";
import { parseExposition, total } from "../../support/exposition";

async function scrape(registry: Registry) {
  const text = await registry.metrics();
  return { text, samples: parseExposition(text) };
}

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

  it('labels streamed requests stream="true"', async () => {
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
    expect(total((await scrape(metrics.registry)).samples, "gateway_in_flight_requests", { backend: "remote" })).toBe(
      2,
    );
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
    const requests = (samples: ReturnType<typeof parseExposition>) =>
      total(samples, "gateway_requests_total", { backend: "local", code: "200", stream: "false" });
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
    const counted = (await metrics.registry.getSingleMetric("gateway_requests_total")?.get())?.values.find(
      (value) => value.labels.code === "502" && value.labels.stream === "true",
    );
    expect(counted).toMatchObject({ value: 1, labels: { backend: "local", stream: "true" } });
    expect((await metrics.registry.getSingleMetric("gateway_in_flight_requests")?.get())?.values).toEqual([
      expect.objectContaining({ value: 1, labels: { backend: "local" } }),
    ]);
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
    ["UpstreamStreamError", new UpstreamStreamError("b", "cut"), "stream_interrupted"],
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

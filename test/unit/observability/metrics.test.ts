import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Registry } from "prom-client";
import { createMetrics, LATENCY_BUCKETS, NO_BACKEND } from "../../../gateway/src/observability/metrics";
import { gatewayVersion } from "../../../gateway/src/utils/version";
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
      gateway_target_requests_total: "counter",
      gateway_target_in_flight: "gauge",
      gateway_target_up: "gauge",
      gateway_backend_request_duration_seconds: "histogram",
      gateway_backend_errors_total: "counter",
      gateway_tokens_total: "counter",
      gateway_in_flight_requests: "gauge",
      gateway_time_to_first_token_seconds: "histogram",
      gateway_fallbacks_total: "counter",
      gateway_backend_up: "gauge",
      gateway_backend_retries_total: "counter",
      gateway_build_info: "gauge",
      gateway_config_info: "gauge",
      gateway_config_last_reload_success_timestamp_seconds: "gauge",
      gateway_config_reloads_total: "counter",
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
    expect(select(samples, "gateway_build_info")).toEqual([
      { name: "gateway_build_info", labels: { version: pkg.version, node_version: process.version }, value: 1 },
    ]);
  });

  it("buckets durations from a millisecond to five minutes", async () => {
    expect(LATENCY_BUCKETS[0]).toBe(0.001);
    expect(LATENCY_BUCKETS[LATENCY_BUCKETS.length - 1]).toBe(300);
    const { samples } = await scrape(createMetrics(new Registry(), ["local"]).registry);
    const bounds = select(samples, "gateway_request_duration_seconds_bucket", { backend: "local" }).map(
      (sample) => sample.labels.le,
    );
    expect(bounds).toEqual([...LATENCY_BUCKETS.map(String), "+Inf"]);
  });
});

describe("series created at start-up", () => {
  it("exist at 0 for every configured backend", async () => {
    const metrics = createMetrics(new Registry(), ["local", "remote"]);
    for (const backend of ["local", "remote"])
      metrics.watchTargets(backend, () => [{ name: "0", inFlight: 0, up: true }]);
    const { samples } = await scrape(metrics.registry);
    for (const backend of ["local", "remote"]) {
      expect(select(samples, "gateway_requests_total", { backend })).toEqual(
        ["200", "502", "503", "504"].map((code) => ({
          name: "gateway_requests_total",
          labels: { backend, code, stream: "false", endpoint: "chat" },
          value: 0,
        })),
      );
      expect(select(samples, "gateway_request_duration_seconds_count", { backend })).toEqual([
        {
          name: "gateway_request_duration_seconds_count",
          labels: { backend, stream: "false", endpoint: "chat" },
          value: 0,
        },
      ]);
      expect(total(samples, "gateway_backend_request_duration_seconds_count", { backend })).toBe(0);
      expect(select(samples, "gateway_backend_request_duration_seconds_count", { backend })).toHaveLength(1);
      expect(select(samples, "gateway_time_to_first_token_seconds_count", { backend })).toHaveLength(1);
      expect(select(samples, "gateway_in_flight_requests", { backend })).toEqual([
        { name: "gateway_in_flight_requests", labels: { backend }, value: 0 },
      ]);
      expect(
        select(samples, "gateway_tokens_total", { backend }).map((sample) => [sample.labels.type, sample.value]),
      ).toEqual([
        ["prompt", 0],
        ["completion", 0],
      ]);
      expect(
        select(samples, "gateway_backend_errors_total", { backend }).map((sample) => [
          sample.labels.reason,
          sample.value,
        ]),
      ).toEqual([
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
      {
        name: "gateway_requests_total",
        labels: { backend: "none", code: "400", stream: "false", endpoint: "chat" },
        value: 0,
      },
    ]);
    expect(select(samples, "gateway_request_duration_seconds_count", { backend: NO_BACKEND })).toHaveLength(1);
    for (const name of [
      "gateway_backend_request_duration_seconds_count",
      "gateway_backend_errors_total",
      "gateway_tokens_total",
      "gateway_in_flight_requests",
    ]) {
      expect(select(samples, name, { backend: NO_BACKEND })).toEqual([]);
    }
  });
});

describe("resilience series", () => {
  it("show every backend up, with no retries, from start-up", async () => {
    const metrics = createMetrics(new Registry(), ["local", "remote"]);
    for (const backend of ["local", "remote"])
      metrics.watchTargets(backend, () => [{ name: "0", inFlight: 0, up: true }]);
    const { samples } = await scrape(metrics.registry);
    expect(select(samples, "gateway_backend_up").map((sample) => [sample.labels.backend, sample.value])).toEqual([
      ["local", 1],
      ["remote", 1],
    ]);
    expect(
      select(samples, "gateway_backend_retries_total").map((sample) => [sample.labels.backend, sample.value]),
    ).toEqual([
      ["local", 0],
      ["remote", 0],
    ]);
  });

  it("exist at 0 for each configured fallback pair, and only those", async () => {
    const metrics = createMetrics(
      new Registry(),
      ["a", "b", "c"],
      new Map([
        ["a", ["b", "c"]],
        ["b", []],
      ]),
    );
    metrics.fallback("a", "c");
    const { samples } = await scrape(metrics.registry);
    expect(
      select(samples, "gateway_fallbacks_total").map((sample) => [sample.labels.from, sample.labels.to, sample.value]),
    ).toEqual([
      ["a", "b", 0],
      ["a", "c", 1],
    ]);
  });

  it("show each target as it is at the scrape, and count retries", async () => {
    const metrics = createMetrics(new Registry(), ["remote"]);
    const targets = [
      { name: "a", inFlight: 2, up: true },
      { name: "b", inFlight: 0, up: false },
    ];
    metrics.watchTargets("remote", () => targets);
    metrics.backend("remote").retried();
    metrics.target("remote", "b").answered(502);
    let { samples } = await scrape(metrics.registry);
    expect(total(samples, "gateway_backend_up", { backend: "remote" })).toBe(1);
    expect(total(samples, "gateway_target_up", { backend: "remote", target: "b" })).toBe(0);
    expect(total(samples, "gateway_target_in_flight", { backend: "remote", target: "a" })).toBe(2);
    expect(total(samples, "gateway_target_requests_total", { backend: "remote", target: "b", code: "502" })).toBe(1);
    expect(total(samples, "gateway_target_requests_total", { backend: "remote", target: "a", code: "200" })).toBe(0);
    expect(total(samples, "gateway_backend_retries_total", { backend: "remote" })).toBe(1);
    // Discovery dropped "a" and every remaining target is out: its gauges go, the backend is down.
    targets.splice(0, 1);
    ({ samples } = await scrape(metrics.registry));
    expect(total(samples, "gateway_backend_up", { backend: "remote" })).toBe(0);
    expect(select(samples, "gateway_target_in_flight").map((sample) => sample.labels.target)).toEqual(["b"]);
  });
});

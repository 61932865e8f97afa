import { readFileSync } from "node:fs";
import { join } from "node:path";
import { type Sample, select, seriesKeys, total } from "../support/exposition";
import { scrape, scrapeUntil } from "../support/metrics";
import {
  chat,
  type RunningGateway,
  type RunningMock,
  startGateway,
  startMock,
  twoBackendConfig,
  userMessage,
} from "../support/servers";

let mock: RunningMock;
let gateway: RunningGateway;

beforeAll(async () => {
  mock = await startMock();
  gateway = await startGateway(twoBackendConfig(mock.url, "timeout: 0.5"));
});

afterAll(async () => {
  await gateway.close();
  await mock.close();
});

/**
 * A request is counted when its response closes, which the server sees a moment after the client has read
 * the answer: scrape until the request count reaches `requests` (bounded in tries and time), then return.
 */
async function scrapeWhenCounted(requests: number): Promise<Sample[]> {
  const samples = await scrapeUntil(gateway.url, (seen) => total(seen, "gateway_requests_total") >= requests);
  expect(total(samples, "gateway_requests_total")).toBe(requests);
  return samples;
}

function remote(knobs: Record<string, unknown> = {}) {
  return { model: "remote", messages: userMessage("Hello world"), mock: knobs };
}

describe("GET /metrics", () => {
  it("serves Prometheus' text format", async () => {
    const response = await fetch(`${gateway.url}/metrics`);
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toBe("text/plain; version=0.0.4; charset=utf-8");
    expect(await response.text()).toContain("# TYPE gateway_requests_total counter");
  });

  it("shows every configured backend, and 'none', at 0 before any traffic", async () => {
    const samples = await scrape(gateway.url);
    expect(
      select(samples, "gateway_requests_total").map((sample) => [
        sample.labels.backend,
        sample.labels.code,
        sample.value,
      ]),
    ).toEqual([
      ["local", "200", 0],
      ["local", "502", 0],
      ["local", "503", 0],
      ["local", "504", 0],
      ["remote", "200", 0],
      ["remote", "502", 0],
      ["remote", "503", 0],
      ["remote", "504", 0],
      ["none", "400", 0],
    ]);
    expect(select(samples, "gateway_in_flight_requests").map((sample) => sample.labels.backend)).toEqual([
      "local",
      "remote",
    ]);
    expect(select(samples, "gateway_backend_errors_total", { backend: "remote" })).toHaveLength(5);
  });

  it("is not itself counted as a request, nor are health checks", async () => {
    for (let i = 0; i < 5; i++) await fetch(`${gateway.url}/metrics`);
    await fetch(`${gateway.url}/health`);
    await fetch(`${gateway.url}/v1/models`);
    expect(total(await scrape(gateway.url), "gateway_requests_total")).toBe(0);
  });

  it("answers 405 to other methods", async () => {
    const response = await fetch(`${gateway.url}/metrics`, { method: "POST" });
    expect(response.status).toBe(405);
  });

  it("reports the build", async () => {
    const pkg = JSON.parse(readFileSync(join(__dirname, "../../package.json"), "utf8")) as { version: string };
    expect(select(await scrape(gateway.url), "gateway_build_info")).toEqual([
      { name: "gateway_build_info", labels: { version: pkg.version, node_version: process.version }, value: 1 },
    ]);
  });
});

describe("after mixed traffic to both backends", () => {
  let samples: Sample[];

  beforeAll(async () => {
    // 4 to local (one of them by default routing), 2 good answers from remote, 4 remote faults, 2 refused.
    for (let i = 0; i < 3; i++)
      expect((await chat(gateway.url, { model: "local", messages: userMessage("Hello world") })).status).toBe(200);
    expect((await chat(gateway.url, { messages: userMessage("Hello world") })).status).toBe(200);
    for (let i = 0; i < 2; i++) expect((await chat(gateway.url, remote())).status).toBe(200);
    expect((await chat(gateway.url, remote({ status: 500 }))).status).toBe(502);
    expect((await chat(gateway.url, remote({ fault: "malformed" }))).status).toBe(502);
    expect((await chat(gateway.url, remote({ fault: "reset" }))).status).toBe(502);
    expect((await chat(gateway.url, remote({ delay_ms: 2000 }))).status).toBe(504);
    expect((await chat(gateway.url, "{not json")).status).toBe(400);
    expect((await chat(gateway.url, { model: "local", messages: [] })).status).toBe(400);
    samples = await scrapeWhenCounted(12);
  });

  it("counts requests by backend and status, with 'none' for those refused before routing", () => {
    expect(
      select(samples, "gateway_requests_total").map((sample) => [
        sample.labels.backend,
        sample.labels.code,
        sample.labels.stream,
        sample.value,
      ]),
    ).toEqual([
      ["local", "200", "false", 4],
      ["local", "502", "false", 0],
      ["local", "503", "false", 0],
      ["local", "504", "false", 0],
      ["remote", "200", "false", 2],
      ["remote", "502", "false", 3],
      ["remote", "503", "false", 0],
      ["remote", "504", "false", 1],
      ["none", "400", "false", 2],
    ]);
  });

  it("times every request, per backend", () => {
    expect(total(samples, "gateway_request_duration_seconds_count", { backend: "local", stream: "false" })).toBe(4);
    expect(total(samples, "gateway_request_duration_seconds_count", { backend: "remote", stream: "false" })).toBe(6);
    expect(total(samples, "gateway_request_duration_seconds_count", { backend: "none", stream: "false" })).toBe(2);
    // The timed-out call took at least the 0.5 s timeout.
    expect(total(samples, "gateway_request_duration_seconds_sum", { backend: "remote" })).toBeGreaterThanOrEqual(0.5);
  });

  it("times every wait on a backend, and the gateway's own overhead is what remains", () => {
    for (const [backend, calls] of [
      ["local", 4],
      ["remote", 6],
    ] as const) {
      expect(total(samples, "gateway_backend_request_duration_seconds_count", { backend })).toBe(calls);
      const whole = total(samples, "gateway_request_duration_seconds_sum", { backend });
      const waiting = total(samples, "gateway_backend_request_duration_seconds_sum", { backend });
      expect(waiting).toBeGreaterThan(0);
      expect(whole - waiting).toBeGreaterThan(0);
    }
  });

  it("counts backend errors by reason", () => {
    const byReason = (backend: string) =>
      Object.fromEntries(
        select(samples, "gateway_backend_errors_total", { backend }).map((sample) => [
          sample.labels.reason,
          sample.value,
        ]),
      );
    expect(byReason("remote")).toEqual({
      timeout: 1,
      connection: 1,
      http_status: 1,
      invalid_response: 1,
      stream_interrupted: 0,
    });
    expect(byReason("local")).toEqual({
      timeout: 0,
      connection: 0,
      http_status: 0,
      invalid_response: 0,
      stream_interrupted: 0,
    });
  });

  it("counts tokens of answered requests, per backend and type", () => {
    // The echo backend's usage is the gateway's estimate, a token per word: "Hello world" 2, "Echo: Hello world" 3.
    // The remote's is mock-remote's own, a token per started four characters: "Hello world" 3, "Remote: Hello world" 5.
    expect(total(samples, "gateway_tokens_total", { backend: "local", type: "prompt" })).toBe(8);
    expect(total(samples, "gateway_tokens_total", { backend: "local", type: "completion" })).toBe(12);
    expect(total(samples, "gateway_tokens_total", { backend: "remote", type: "prompt" })).toBe(6);
    expect(total(samples, "gateway_tokens_total", { backend: "remote", type: "completion" })).toBe(10);
  });

  it("has nothing in flight once every answer is in", () => {
    expect(select(samples, "gateway_in_flight_requests").map((sample) => sample.value)).toEqual([0, 0]);
  });
});

describe("requests in flight and clients that leave", () => {
  it("shows a slow backend call in flight while it waits", async () => {
    const before = total(await scrape(gateway.url), "gateway_requests_total");
    const pending = chat(gateway.url, remote({ delay_ms: 300 }));
    let inFlight = 0;
    const deadline = Date.now() + 2000;
    for (let attempt = 0; attempt < 100 && inFlight === 0 && Date.now() < deadline; attempt++) {
      inFlight = total(await scrape(gateway.url), "gateway_in_flight_requests", { backend: "remote" });
      if (inFlight === 0) await new Promise((resolve) => setTimeout(resolve, 10));
    }
    expect(inFlight).toBe(1);
    expect((await pending).status).toBe(200);
    const after = await scrapeWhenCounted(before + 1);
    expect(total(after, "gateway_in_flight_requests", { backend: "remote" })).toBe(0);
  });

  it("counts a client that left as 499, and not as a backend error", async () => {
    const before = await scrape(gateway.url);
    const controller = new AbortController();
    const request = fetch(`${gateway.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(remote({ delay_ms: 2000 })),
      signal: controller.signal,
    });
    setTimeout(() => controller.abort(), 100);
    await expect(request).rejects.toThrow();
    const after = await scrapeWhenCounted(total(before, "gateway_requests_total") + 1);
    expect(total(after, "gateway_requests_total", { backend: "remote", code: "499" })).toBe(1);
    expect(total(after, "gateway_backend_errors_total", { backend: "remote" })).toBe(
      total(before, "gateway_backend_errors_total", { backend: "remote" }),
    );
    // The abandoned call still left the in-flight gauge, once the backend call ended.
    const deadline = Date.now() + 2000;
    let inFlight = total(after, "gateway_in_flight_requests", { backend: "remote" });
    for (let attempt = 0; attempt < 100 && inFlight !== 0 && Date.now() < deadline; attempt++) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      inFlight = total(await scrape(gateway.url), "gateway_in_flight_requests", { backend: "remote" });
    }
    expect(inFlight).toBe(0);
  });
});

describe("label values stay bounded", () => {
  it("does not make a series per model name: 1000 unknown models all count as the default backend", async () => {
    const before = await scrape(gateway.url);
    const countedBefore = total(before, "gateway_requests_total");
    const localBefore = total(before, "gateway_requests_total", { backend: "local" });
    const names = Array.from({ length: 1000 }, (_, i) => `model-${i}-${Math.random().toString(36).slice(2)}`);
    // In batches of 50, so the test is quick without opening 1000 sockets at once.
    for (let start = 0; start < names.length; start += 50) {
      const batch = names
        .slice(start, start + 50)
        .map((model) => chat(gateway.url, { model, messages: userMessage("x") }));
      for (const answer of await Promise.all(batch)) expect(answer.status).toBe(200);
    }
    const after = await scrapeWhenCounted(countedBefore + 1000);
    expect(total(after, "gateway_requests_total", { backend: "local" })).toBe(localBefore + 1000);
    expect(seriesKeys(after, "gateway_")).toEqual(seriesKeys(before, "gateway_"));
    const text = await (await fetch(`${gateway.url}/metrics`)).text();
    expect(text).not.toContain(names[0]);
  });
});

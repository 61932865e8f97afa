import { Registry } from "prom-client";
import { ClientClosedError, UpstreamHttpError } from "../../../gateway/src/errors";
import { createMetrics, type GatewayMetrics } from "../../../gateway/src/observability/metrics";
import { InferenceService } from "../../../gateway/src/services/inference";
import { parseExposition, total } from "../../support/exposition";
import { FakeBackend } from "../../support/fake-backend";

const options = { requestId: "req-1", signal: new AbortController().signal, startedAt: performance.now() };
const request = { messages: [{ role: "user" as const, content: "Hello world" }] };

let metrics: GatewayMetrics;
let local: FakeBackend;
let remote: FakeBackend;
let service: InferenceService;

beforeEach(() => {
  const answer = { message: { role: "assistant" as const, content: "one two three" }, finishReason: "stop" as const };
  local = new FakeBackend("local", { result: answer });
  remote = new FakeBackend("remote", { result: answer });
  metrics = createMetrics(new Registry(), ["local", "remote"]);
  service = new InferenceService([local, remote], local, metrics);
});

async function samples() {
  return parseExposition(await metrics.registry.metrics());
}

describe("InferenceService records each backend call", () => {
  it("times the wait on the backend under the backend's name", async () => {
    await service.complete(remote, request, options);
    const all = await samples();
    expect(total(all, "gateway_backend_request_duration_seconds_count", { backend: "remote" })).toBe(1);
    expect(total(all, "gateway_backend_request_duration_seconds_count", { backend: "local" })).toBe(0);
  });

  it("counts the backend's own token usage", async () => {
    remote.result = { ...remote.result, usage: { prompt_tokens: 11, completion_tokens: 22, total_tokens: 33 } };
    await service.complete(remote, request, options);
    const all = await samples();
    expect(total(all, "gateway_tokens_total", { backend: "remote", type: "prompt" })).toBe(11);
    expect(total(all, "gateway_tokens_total", { backend: "remote", type: "completion" })).toBe(22);
  });

  it("counts the estimated usage when the backend has none", async () => {
    await service.complete(local, request, options);
    const all = await samples();
    expect(total(all, "gateway_tokens_total", { backend: "local", type: "prompt" })).toBe(2);
    expect(total(all, "gateway_tokens_total", { backend: "local", type: "completion" })).toBe(3);
  });

  it("shows a call in flight until the backend answers", async () => {
    remote.holdCalls = true;
    const pending = service.complete(remote, request, options);
    await new Promise((resolve) => setImmediate(resolve));
    expect(total(await samples(), "gateway_in_flight_requests", { backend: "remote" })).toBe(1);
    remote.release?.();
    await pending;
    expect(total(await samples(), "gateway_in_flight_requests", { backend: "remote" })).toBe(0);
  });

  it("counts a failure under its reason, times it, and passes the error on", async () => {
    remote.failure = new UpstreamHttpError("remote", 500, "boom");
    await expect(service.complete(remote, request, options)).rejects.toBe(remote.failure);
    const all = await samples();
    expect(total(all, "gateway_backend_errors_total", { backend: "remote", reason: "http_status" })).toBe(1);
    expect(total(all, "gateway_backend_request_duration_seconds_count", { backend: "remote" })).toBe(1);
    expect(total(all, "gateway_in_flight_requests", { backend: "remote" })).toBe(0);
    expect(total(all, "gateway_tokens_total", { backend: "remote" })).toBe(0);
  });

  it("does not count a client that left as a backend error", async () => {
    remote.failure = new ClientClosedError();
    await expect(service.complete(remote, request, options)).rejects.toBeInstanceOf(ClientClosedError);
    expect(total(await samples(), "gateway_backend_errors_total", { backend: "remote" })).toBe(0);
  });
});

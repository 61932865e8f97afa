import { Registry } from "prom-client";
import type { StreamEvent } from "../../../gateway/src/backends/backend";
import { UpstreamStreamError, UpstreamUnreachableError } from "../../../gateway/src/errors";
import { createMetrics, type GatewayMetrics } from "../../../gateway/src/observability/metrics";
import type { ChatCompletionChunk } from "../../../gateway/src/schemas/chat";
import { InferenceService } from "../../../gateway/src/services/inference";
import { parseExposition, total } from "../../support/exposition";
import { FakeBackend } from "../../support/fake-backend";

const options = { requestId: "r", signal: new AbortController().signal, startedAt: performance.now() };
const messages = [{ role: "user", content: "Hello world" }];
const words: StreamEvent[] = [{ delta: { content: "Hi" } }, { delta: { content: " there" } }];

let metrics: GatewayMetrics;
beforeEach(() => {
  metrics = createMetrics(new Registry(), ["s"]);
});

async function collect(stream: AsyncIterable<ChatCompletionChunk>): Promise<ChatCompletionChunk[]> {
  const chunks: ChatCompletionChunk[] = [];
  for await (const chunk of stream) chunks.push(chunk);
  return chunks;
}

async function metric(name: string, labels: Record<string, string>): Promise<number> {
  return total(parseExposition(await metrics.registry.metrics()), name, labels);
}

describe("InferenceService.openStream", () => {
  it("makes OpenAI chunks: one id, role first, finish_reason last", async () => {
    const backend = new FakeBackend("s", { events: words });
    const chunks = await collect(
      await new InferenceService([backend], backend, metrics).openStream(backend, { model: "m", messages }, options),
    );
    expect(new Set(chunks.map((chunk) => chunk.id)).size).toBe(1);
    expect(new Set(chunks.map((chunk) => chunk.created)).size).toBe(1);
    expect(chunks.map((chunk) => chunk.choices[0]?.delta)).toEqual([
      { role: "assistant", content: "Hi" },
      { content: " there" },
      {},
    ]);
    expect(chunks.map((chunk) => chunk.choices[0]?.finish_reason)).toEqual([null, null, "stop"]);
    expect(
      chunks.every((chunk) => chunk.object === "chat.completion.chunk" && chunk.model === "m" && chunk.backend === "s"),
    ).toBe(true);
    expect(chunks.every((chunk) => !("usage" in chunk))).toBe(true);
  });

  it("keeps the backend's own finish reason and does not add a second one", async () => {
    const backend = new FakeBackend("s", { events: [...words, { finishReason: "length" }] });
    const chunks = await collect(
      await new InferenceService([backend], backend, metrics).openStream(backend, { messages }, options),
    );
    expect(chunks.map((chunk) => chunk.choices[0]?.finish_reason)).toEqual([null, null, "length"]);
  });

  it("with include_usage, ends with exactly one usage chunk and nulls elsewhere", async () => {
    const backend = new FakeBackend("s", { events: words });
    const request = { messages, stream: true, stream_options: { include_usage: true } };
    const chunks = await collect(
      await new InferenceService([backend], backend, metrics).openStream(backend, request, options),
    );
    const last = chunks[chunks.length - 1];
    expect(last?.choices).toEqual([]);
    expect(last?.usage).toEqual({ prompt_tokens: 2, completion_tokens: 2, total_tokens: 4 });
    expect(chunks.slice(0, -1).every((chunk) => chunk.usage === null)).toBe(true);
  });

  it("prefers the backend's usage and counts tokens either way", async () => {
    const usage = { prompt_tokens: 11, completion_tokens: 22, total_tokens: 33 };
    const backend = new FakeBackend("s", { events: [...words, { usage }] });
    const chunks = await collect(
      await new InferenceService([backend], backend, metrics).openStream(
        backend,
        { messages, stream_options: { include_usage: true } },
        options,
      ),
    );
    expect(chunks[chunks.length - 1]?.usage).toEqual(usage);
    expect(await metric("gateway_tokens_total", { backend: "s", type: "completion" })).toBe(22);
    expect(await metric("gateway_time_to_first_token_seconds_count", { backend: "s" })).toBe(1);
  });

  it("rejects before anything is sent when the backend fails at once", async () => {
    const backend = new FakeBackend("s", {
      events: words,
      streamFailure: { after: 0, error: new UpstreamUnreachableError("s", "refused") },
    });
    await expect(
      new InferenceService([backend], backend, metrics).openStream(backend, { messages }, options),
    ).rejects.toBeInstanceOf(UpstreamUnreachableError);
    expect(await metric("gateway_backend_errors_total", { backend: "s", reason: "connection" })).toBe(1);
    expect(await metric("gateway_backend_errors_total", { backend: "s", reason: "stream_interrupted" })).toBe(0);
  });

  it("throws mid-stream when the backend breaks later, counted as stream_interrupted", async () => {
    const backend = new FakeBackend("s", {
      events: words,
      streamFailure: { after: 1, error: new UpstreamStreamError("s", "cut") },
    });
    const stream = await new InferenceService([backend], backend, metrics).openStream(backend, { messages }, options);
    const seen: ChatCompletionChunk[] = [];
    await expect(
      (async () => {
        for await (const chunk of stream) seen.push(chunk);
      })(),
    ).rejects.toBeInstanceOf(UpstreamStreamError);
    expect(seen).toHaveLength(1);
    expect(await metric("gateway_backend_errors_total", { backend: "s", reason: "stream_interrupted" })).toBe(1);
    expect(await metric("gateway_in_flight_requests", { backend: "s" })).toBe(0);
  });

  it("releases the backend when the consumer stops early", async () => {
    const backend = new FakeBackend("s", { events: [...words, ...words] });
    const stream = await new InferenceService([backend], backend, metrics).openStream(backend, { messages }, options);
    for await (const _chunk of stream) break;
    expect(backend.returned).toBe(true);
    expect(await metric("gateway_in_flight_requests", { backend: "s" })).toBe(0);
  });
});

import { Registry } from "prom-client";
import type { BackendCall, StreamEvent } from "../../../gateway/src/backends/backend";
import { echoBackendFactory } from "../../../gateway/src/backends/echo";
import { ResponseBudget } from "../../../gateway/src/backends/response-budget";
import { UpstreamInvalidResponseError, UpstreamStreamError } from "../../../gateway/src/errors";
import { createLogger } from "../../../gateway/src/observability/logger";
import { createMetrics, type GatewayMetrics } from "../../../gateway/src/observability/metrics";
import type { ResponseEvent, ResponsesRequest } from "../../../gateway/src/schemas/responses";
import { InferenceService } from "../../../gateway/src/services/inference";
import { parseExposition, total } from "../../support/exposition";
import { FakeBackend } from "../../support/fake-backend";

const options = { requestId: "r", signal: new AbortController().signal, startedAt: performance.now() };
const messages = [{ role: "user", content: "Hello world" }];

let metrics: GatewayMetrics;
beforeEach(() => {
  metrics = createMetrics(new Registry(), ["s", "local"]);
});

async function collect<T>(stream: AsyncIterable<T>): Promise<T[]> {
  const items: T[] = [];
  for await (const item of stream) items.push(item);
  return items;
}

async function metric(name: string, labels: Record<string, string>): Promise<number> {
  return total(parseExposition(await metrics.registry.metrics()), name, labels);
}

function echo(): InferenceService {
  const backend = echoBackendFactory.create(
    "local",
    {},
    { env: {}, logger: createLogger({ level: "error", service: "test" }), responseBudget: new ResponseBudget(1024) },
  );
  return new InferenceService([backend], backend, metrics);
}

/** A backend whose Responses stream is scripted: these events, then (optionally) a failure. */
class ResponsesFake extends FakeBackend {
  constructor(
    name: string,
    private readonly events: readonly ResponseEvent[],
    private readonly breaksWith?: Error,
  ) {
    super(name);
  }

  async *streamResponse(_call: BackendCall<ResponsesRequest>): AsyncGenerator<ResponseEvent> {
    yield* this.events;
    if (this.breaksWith !== undefined) throw this.breaksWith;
  }
}

describe("chat completions with n > 1", () => {
  it("echo answers n identical choices, indexed, whole", async () => {
    const answer = await echo().completeChat({ messages, n: 3 }, options);
    expect(answer.choices.map((choice) => [choice.index, choice.message.content])).toEqual([
      [0, "Echo: Hello world"],
      [1, "Echo: Hello world"],
      [2, "Echo: Hello world"],
    ]);
  });

  it("streams every choice with its own role first and its own finish reason", async () => {
    const chunks = await collect(await echo().openChatStream({ messages, n: 2, stream: true }, options));
    for (const index of [0, 1]) {
      const mine = chunks.map((chunk) => chunk.choices[0]).filter((choice) => choice?.index === index);
      expect(mine[0]?.delta).toEqual({ role: "assistant", content: "Echo:" });
      expect(mine.map((choice) => (choice?.delta.content as string | undefined) ?? "").join("")).toBe(
        "Echo: Hello world",
      );
      expect(mine.filter((choice) => choice?.finish_reason !== null).map((choice) => choice?.finish_reason)).toEqual([
        "stop",
      ]);
    }
  });

  it("closes a choice the backend never finished, and opens one it never started", async () => {
    const events: StreamEvent[] = [{ delta: { content: "a" } }, { delta: { content: "b" }, index: 1 }];
    const backend = new FakeBackend("s", { events });
    const service = new InferenceService([backend], backend, metrics);
    const chunks = await collect(await service.openChatStream({ messages, n: 3 }, options));
    const choices = chunks.map((chunk) => chunk.choices[0]);
    expect(choices.filter((choice) => choice?.index === 2).map((choice) => choice?.delta)).toEqual([
      { role: "assistant", content: "" },
      {},
    ]);
    expect(choices.filter((choice) => choice?.finish_reason === "stop").map((choice) => choice?.index)).toEqual([
      0, 1, 2,
    ]);
  });

  it("relays the further choices one upstream event carried, each as its own chunk", async () => {
    const events: StreamEvent[] = [{ delta: { content: "a" }, also: [{ delta: { content: "b" }, index: 1 }] }];
    const backend = new FakeBackend("s", { events });
    const chunks = await collect(
      await new InferenceService([backend], backend, metrics).openChatStream({ messages, n: 2 }, options),
    );
    expect(chunks.slice(0, 2).map((chunk) => [chunk.choices[0]?.index, chunk.choices[0]?.delta.content])).toEqual([
      [0, "a"],
      [1, "b"],
    ]);
  });

  it("fails the stream (and lets the upstream go) on a choice index past n", async () => {
    const events: StreamEvent[] = [{ delta: { content: "a" } }, { delta: { content: "b" }, index: 5 }];
    const backend = new FakeBackend("s", { events: [...events, { delta: { content: "c" } }] });
    const stream = await new InferenceService([backend], backend, metrics).openChatStream({ messages, n: 2 }, options);
    await expect(collect(stream)).rejects.toBeInstanceOf(UpstreamInvalidResponseError);
    expect(backend.returned).toBe(true);
    expect(await metric("gateway_backend_errors_total", { backend: "s", reason: "stream_interrupted" })).toBe(1);
    expect(await metric("gateway_in_flight_requests", { backend: "s" })).toBe(0);
  });
});

describe("text completions", () => {
  it("echo answers Echo: {prompt} for every choice, with usage counted under endpoint=completions", async () => {
    const answer = await echo().completeText({ prompt: ["Hello", "world"], n: 2 }, options);
    expect(answer.object).toBe("text_completion");
    expect(answer.backend).toBe("local");
    expect(answer.choices).toEqual([
      { text: "Echo: Hello\nworld", index: 0, logprobs: null, finish_reason: "stop" },
      { text: "Echo: Hello\nworld", index: 1, logprobs: null, finish_reason: "stop" },
    ]);
    expect(await metric("gateway_tokens_total", { backend: "local", type: "prompt", endpoint: "completions" })).toBe(2);
    expect(await metric("gateway_tokens_total", { backend: "local", endpoint: "chat" })).toBe(0);
  });

  it("streams text_completion chunks: one id, text pieces, one finish, one usage chunk", async () => {
    const chunks = await collect(
      await echo().openTextStream(
        { prompt: "Hello world", stream: true, stream_options: { include_usage: true } },
        options,
      ),
    );
    expect(new Set(chunks.map((chunk) => chunk.id)).size).toBe(1);
    expect(chunks.every((chunk) => chunk.object === "text_completion")).toBe(true);
    expect(chunks.map((chunk) => chunk.choices[0]?.text ?? "").join("")).toBe("Echo: Hello world");
    expect(chunks.flatMap((chunk) => chunk.choices.map((choice) => choice.finish_reason)).filter(Boolean)).toEqual([
      "stop",
    ]);
    expect(chunks[chunks.length - 1]?.usage).toEqual({ prompt_tokens: 2, completion_tokens: 3, total_tokens: 5 });
    expect(chunks.some((chunk) => chunk.choices.some((choice) => "delta" in choice))).toBe(false);
  });
});

describe("responses", () => {
  it("echo answers a completed Response with one output_text, the asked model and the backend", async () => {
    const response = await echo().respond({ model: "local", input: "Hello world" }, options);
    expect(response).toMatchObject({ object: "response", status: "completed", model: "local", backend: "local" });
    expect(response.output).toEqual([
      expect.objectContaining({
        type: "message",
        role: "assistant",
        content: [{ type: "output_text", text: "Echo: Hello world", annotations: [] }],
      }),
    ]);
    expect(await metric("gateway_tokens_total", { backend: "local", type: "completion", endpoint: "responses" })).toBe(
      3,
    );
  });

  it("streams the typed events in order, numbered, ending with response.completed", async () => {
    const events = await collect(await echo().openResponseStream({ input: "Hi", stream: true }, options));
    expect(events.map((event) => event.type)).toEqual([
      "response.created",
      "response.in_progress",
      "response.output_item.added",
      "response.content_part.added",
      "response.output_text.delta",
      "response.output_text.delta",
      "response.output_text.done",
      "response.content_part.done",
      "response.output_item.done",
      "response.completed",
    ]);
    expect(events.map((event) => event.sequence_number)).toEqual(events.map((_event, index) => index));
    expect(events[events.length - 1]?.response).toMatchObject({ backend: "local", status: "completed" });
  });

  it("sets model and backend on the Response each lifecycle event carries, and leaves the others alone", async () => {
    const delta = { type: "response.output_text.delta", delta: "x", sequence_number: 1 };
    const backend = new ResponsesFake("s", [
      { type: "response.created", response: { id: "resp_1", model: "upstream-model" }, sequence_number: 0 },
      delta,
      { type: "response.completed", response: { id: "resp_1", usage: { input_tokens: 4, output_tokens: 7 } } },
    ]);
    const service = new InferenceService([backend], backend, metrics);
    const events = await collect(await service.openResponseStream({ model: "s", input: "Hi" }, options));
    expect(events[0]?.response).toEqual({ id: "resp_1", model: "s", backend: "s" });
    expect(events[1]).toEqual(delta);
    expect(await metric("gateway_tokens_total", { backend: "s", type: "completion", endpoint: "responses" })).toBe(7);
  });

  it("fails a stream that ends without a final event, as a cut (stream_interrupted)", async () => {
    const backend = new ResponsesFake("s", [
      { type: "response.created", response: { id: "resp_1" } },
      { type: "response.output_text.delta", delta: "x" },
    ]);
    const stream = await new InferenceService([backend], backend, metrics).openResponseStream({ input: "Hi" }, options);
    await expect(collect(stream)).rejects.toThrow("the stream ended before response.completed");
    expect(await metric("gateway_backend_errors_total", { backend: "s", reason: "stream_interrupted" })).toBe(1);
    expect(await metric("gateway_in_flight_requests", { backend: "s" })).toBe(0);
  });

  it("throws on what broke the upstream after the first event", async () => {
    const backend = new ResponsesFake(
      "s",
      [{ type: "response.created", response: { id: "resp_1" } }],
      new UpstreamStreamError("s", "cut"),
    );
    const stream = await new InferenceService([backend], backend, metrics).openResponseStream({ input: "Hi" }, options);
    const seen: ResponseEvent[] = [];
    await expect(
      (async () => {
        for await (const event of stream) seen.push(event);
      })(),
    ).rejects.toBeInstanceOf(UpstreamStreamError);
    expect(seen.map((event) => event.type)).toEqual(["response.created"]);
  });

  it("refuses a backend type without the endpoint with 400 unsupported_endpoint", async () => {
    const backend = new FakeBackend("s");
    const service = new InferenceService([backend], backend, metrics);
    await expect(service.respond({ input: "Hi" }, options)).rejects.toMatchObject({
      status: 400,
      code: "unsupported_endpoint",
    });
    await expect(service.openTextStream({ prompt: "Hi" }, options)).rejects.toMatchObject({
      code: "unsupported_endpoint",
    });
  });
});

import { createMetrics } from "../../../gateway/src/observability/metrics";
import { InferenceService } from "../../../gateway/src/services/inference";
import { FakeBackend } from "../../support/fake-backend";

const options = { requestId: "req-1", signal: new AbortController().signal, startedAt: performance.now() };
const messages = [{ role: "user", content: "Hello world" }];

describe("InferenceService.route", () => {
  const local = new FakeBackend("local");
  const remote = new FakeBackend("remote");
  const service = new InferenceService([local, remote], local, createMetrics());

  it("picks the backend the model names", () => {
    expect(service.route("remote")).toBe(remote);
  });

  it("sends a missing model to the default backend", () => {
    expect(service.route(undefined)).toBe(local);
  });

  it("sends an unknown model to the default backend", () => {
    expect(service.route("gpt-4o")).toBe(local);
  });
});

describe("InferenceService.complete", () => {
  it("builds a chat.completion naming the backend, with estimated usage", async () => {
    const local = new FakeBackend("local");
    const service = new InferenceService([local], local, createMetrics());
    const before = Math.floor(Date.now() / 1000);
    const completion = await service.complete(local, { messages }, options);
    expect(completion).toMatchObject({
      object: "chat.completion",
      model: "local",
      backend: "local",
      choices: [{ index: 0, message: { role: "assistant", content: "from local" }, finish_reason: "stop", logprobs: null }],
      usage: { prompt_tokens: 2, completion_tokens: 2, total_tokens: 4 },
    });
    expect(completion.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(completion.created).toBeGreaterThanOrEqual(before);
  });

  it("reports the model the client asked for", async () => {
    const local = new FakeBackend("local");
    const completion = await new InferenceService([local], local, createMetrics()).complete(local, { model: "gpt-4o", messages }, options);
    expect(completion.model).toBe("gpt-4o");
    expect(completion.backend).toBe("local");
  });

  it("passes the backend's own usage through", async () => {
    const usage = { prompt_tokens: 10, completion_tokens: 20, total_tokens: 30 };
    const remote = new FakeBackend("remote", { result: { message: { role: "assistant", content: "x" }, finishReason: "length", usage } });
    const completion = await new InferenceService([remote], remote, createMetrics()).complete(remote, { messages }, options);
    expect(completion.usage).toEqual(usage);
    expect(completion.choices[0].finish_reason).toBe("length");
  });

  it("hands the backend the prompt, request id and abort signal", async () => {
    const local = new FakeBackend("local");
    await new InferenceService([local], local, createMetrics()).complete(local, { messages }, options);
    expect(local.calls[0]?.call).toMatchObject({ prompt: "Hello world", requestId: "req-1", signal: options.signal });
  });
});

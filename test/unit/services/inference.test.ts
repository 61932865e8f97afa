import { BackendNotAllowedError } from "../../../gateway/src/errors";
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
      choices: [
        { index: 0, message: { role: "assistant", content: "from local" }, finish_reason: "stop", logprobs: null },
      ],
      usage: { prompt_tokens: 2, completion_tokens: 2, total_tokens: 4 },
    });
    expect(completion.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(completion.created).toBeGreaterThanOrEqual(before);
  });

  it("reports the model the client asked for", async () => {
    const local = new FakeBackend("local");
    const completion = await new InferenceService([local], local, createMetrics()).complete(
      local,
      { model: "gpt-4o", messages },
      options,
    );
    expect(completion.model).toBe("gpt-4o");
    expect(completion.backend).toBe("local");
  });

  it("passes the backend's own usage through", async () => {
    const usage = { prompt_tokens: 10, completion_tokens: 20, total_tokens: 30 };
    const remote = new FakeBackend("remote", {
      result: { message: { role: "assistant", content: "x" }, finishReason: "length", usage },
    });
    const completion = await new InferenceService([remote], remote, createMetrics()).complete(
      remote,
      { messages },
      options,
    );
    expect(completion.usage).toEqual(usage);
    expect(completion.choices[0]?.finish_reason).toBe("length");
  });

  it("hands the backend the prompt, request id and abort signal", async () => {
    const local = new FakeBackend("local");
    await new InferenceService([local], local, createMetrics()).complete(local, { messages }, options);
    expect(local.calls[0]?.call).toMatchObject({ prompt: "Hello world", requestId: "req-1", signal: options.signal });
  });
});

describe("InferenceService.completeChat and openChatStream", () => {
  /** A key limited to `local`, and what the service counted as refused. */
  function limited() {
    const local = new FakeBackend("local");
    const remote = new FakeBackend("remote");
    const refused: [string, string][] = [];
    const service = new InferenceService([local, remote], local, createMetrics(), {
      refusals: { rejected: (key, reason) => refused.push([key, reason]) },
    });
    const streamed: string[] = [];
    const keyOptions = {
      ...options,
      allowlist: { key: "team-a", backends: new Set(["local"]) },
      onStream: () => streamed.push("stream"),
    };
    return { local, remote, refused, service, streamed, keyOptions };
  }

  it("routes by the request's model", async () => {
    const { remote, service } = limited();
    const completion = await service.completeChat({ model: "remote", messages }, options);
    expect(completion.backend).toBe("remote");
    expect(remote.calls).toHaveLength(1);
  });

  it("answers a key from a backend it may use", async () => {
    const { service, keyOptions, refused } = limited();
    const completion = await service.completeChat({ model: "local", messages }, keyOptions);
    expect(completion.backend).toBe("local");
    expect(refused).toEqual([]);
  });

  it("refuses a key a backend outside its allowlist, counted, before any backend is called", async () => {
    const { remote, service, keyOptions, refused } = limited();
    const refusal = service.completeChat({ model: "remote", messages }, keyOptions);
    await expect(refusal).rejects.toBeInstanceOf(BackendNotAllowedError);
    await expect(refusal).rejects.toMatchObject({
      status: 403,
      code: "model_not_allowed",
      message: "The API key 'team-a' may not use the model 'remote'.",
    });
    expect(refused).toEqual([["team-a", "model_not_allowed"]]);
    expect(remote.calls).toHaveLength(0);
  });

  it("checks a stream the same way, and marks it a stream only once it passed", async () => {
    const { remote, service, keyOptions, refused, streamed } = limited();
    await expect(service.openChatStream({ model: "remote", messages }, keyOptions)).rejects.toBeInstanceOf(
      BackendNotAllowedError,
    );
    expect(streamed).toEqual([]);
    expect(remote.calls).toHaveLength(0);
    expect(refused).toEqual([["team-a", "model_not_allowed"]]);
    const chunks: unknown[] = [];
    for await (const chunk of await service.openChatStream({ model: "local", messages }, keyOptions))
      chunks.push(chunk);
    expect(streamed).toEqual(["stream"]);
    expect(chunks[0]).toMatchObject({
      backend: "local",
      choices: [{ delta: { role: "assistant", content: "from local" } }],
    });
  });
});

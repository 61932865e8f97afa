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
  gateway = await startGateway(twoBackendConfig(mock.url, "timeout: 5"));
});

afterAll(async () => {
  await gateway.close();
  await mock.close();
});

describe("routing by model (the README's three curls)", () => {
  it("answers model 'local' from the echo backend", async () => {
    const { status, body, headers } = await chat(gateway.url, { model: "local", messages: userMessage("Hello world") });
    expect(status).toBe(200);
    expect(body).toMatchObject({
      object: "chat.completion",
      model: "local",
      backend: "local",
      choices: [{ index: 0, message: { role: "assistant", content: "Echo: Hello world" }, finish_reason: "stop" }],
      usage: { prompt_tokens: 2, completion_tokens: 3, total_tokens: 5 },
    });
    expect(body.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(typeof body.created).toBe("number");
    expect(headers.get("x-gateway-backend")).toBe("local");
  });

  it("answers model 'remote' through the http backend", async () => {
    const { status, body } = await chat(gateway.url, { model: "remote", messages: userMessage("Hello world") });
    expect(status).toBe(200);
    expect(body).toMatchObject({
      model: "remote",
      backend: "remote",
      choices: [{ message: { role: "assistant", content: "Remote: Hello world" } }],
    });
  });

  it("sends a request without a model to the default backend", async () => {
    const { status, body } = await chat(gateway.url, { messages: userMessage("Hello world") });
    expect(status).toBe(200);
    expect(body).toMatchObject({
      model: "local",
      backend: "local",
      choices: [{ message: { content: "Echo: Hello world" } }],
    });
  });

  it("sends an unknown model to the default backend and reports the model asked for", async () => {
    const { body } = await chat(gateway.url, { model: "gpt-4o", messages: userMessage("Hi") });
    expect(body).toMatchObject({ model: "gpt-4o", backend: "local", choices: [{ message: { content: "Echo: Hi" } }] });
  });

  it("uses the text parts of array content and joins user turns", async () => {
    const { body } = await chat(gateway.url, {
      model: "local",
      messages: [
        { role: "system", content: "ignored" },
        {
          role: "user",
          content: [
            { type: "text", text: "a b" },
            { type: "image_url", image_url: { url: "data:," } },
          ],
        },
        { role: "assistant", content: null, tool_calls: [] },
        { role: "user", content: "c" },
      ],
    });
    expect(body).toMatchObject({
      choices: [{ message: { content: "Echo: a b\nc" } }],
      usage: { prompt_tokens: 3, completion_tokens: 4, total_tokens: 7 },
    });
  });
});

describe("the http backend", () => {
  it("passes the upstream's usage through", async () => {
    const { body } = await chat(gateway.url, { model: "remote", messages: userMessage("one two three") });
    // mock-remote counts a token per started four characters (13 and 21 here); the gateway's own estimate
    // would be one per word (3 and 4), so only a pass-through gives these numbers.
    expect(body.usage).toEqual({ prompt_tokens: 4, completion_tokens: 6, total_tokens: 10 });
  });

  it("forwards the client's payload, extra fields included, and the request id", async () => {
    const { headers } = await chat(
      gateway.url,
      { model: "remote", messages: userMessage("fwd"), temperature: 0.5, top_k: 40, user: "u-1" },
      { "x-request-id": "trace-forward-1" },
    );
    expect(headers.get("x-request-id")).toBe("trace-forward-1");
    const seen = mock.seen.find((request) => request.headers["x-request-id"] === "trace-forward-1");
    expect(seen?.path).toBe("/v1/chat/completions");
    expect(seen?.body).toEqual({
      model: "remote",
      messages: userMessage("fwd"),
      temperature: 0.5,
      top_k: 40,
      user: "u-1",
    });
  });
});

describe("request ids", () => {
  it("makes one when the client sends none", async () => {
    const { headers } = await chat(gateway.url, { messages: userMessage("x") });
    expect(headers.get("x-request-id")).toMatch(/^[0-9a-f-]{36}$/);
  });

  it("replaces an unsafe one", async () => {
    const { headers } = await chat(gateway.url, { messages: userMessage("x") }, { "x-request-id": "x".repeat(500) });
    expect(headers.get("x-request-id")).toMatch(/^[0-9a-f-]{36}$/);
  });

  it("echoes it on errors too", async () => {
    const { status, headers } = await chat(gateway.url, "{not json", { "x-request-id": "err-id-1" });
    expect(status).toBe(400);
    expect(headers.get("x-request-id")).toBe("err-id-1");
  });

  it("appears in the request's access log line", async () => {
    await chat(gateway.url, { model: "local", messages: userMessage("x") }, { "x-request-id": "logged-id-1" });
    await new Promise((resolve) => setTimeout(resolve, 20));
    const lines = gateway.logLines().filter((line) => line.requestId === "logged-id-1");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({
      message: "request",
      method: "POST",
      path: "/v1/chat/completions",
      status: 200,
      backend: "local",
      service: "gateway",
    });
    expect(typeof lines[0]?.durationMs).toBe("number");
  });
});

describe("bad input", () => {
  function expectOpenAIError(
    body: Record<string, unknown>,
    fields: { type: string; param?: string | null; code?: string | null },
  ) {
    const error = body.error as Record<string, unknown>;
    expect(Object.keys(error).sort()).toEqual(["code", "message", "param", "type"]);
    expect(typeof error.message).toBe("string");
    expect(error).toMatchObject(fields);
  }

  it("rejects invalid JSON with 400", async () => {
    const { status, body } = await chat(gateway.url, '{"messages": [');
    expect(status).toBe(400);
    expectOpenAIError(body, { type: "invalid_request_error", param: null, code: "invalid_json" });
  });

  it.each([
    ["a missing messages", { model: "local" }, "messages", "messages is required"],
    ["an empty messages", { messages: [] }, "messages", "messages must be a non-empty array"],
    ["messages that is not an array", { messages: "hi" }, "messages", "messages must be a non-empty array"],
    ["a message that is not an object", { messages: ["hi"] }, "messages[0]", "each message must be an object"],
    ["an unknown role", { messages: [{ role: "robot", content: "x" }] }, "messages[0].role", "role must be one of"],
    [
      "user content of the wrong type",
      { messages: [{ role: "user", content: 5 }] },
      "messages[0].content",
      "must be a string or an array",
    ],
    [
      "user content missing",
      { messages: [{ role: "user" }] },
      "messages[0].content",
      "messages[0].content is required",
    ],
    [
      "a content part without type",
      { messages: [{ role: "user", content: [{ text: "x" }] }] },
      "messages[0].content",
      "[0] must be an object",
    ],
    ["a model that is not a string", { model: 7, messages: userMessage("x") }, "model", "model must be a string"],
    [
      "a temperature out of range",
      { temperature: 3, messages: userMessage("x") },
      "temperature",
      "temperature must be a number from 0 to 2",
    ],
    [
      "a max_tokens that is not an integer",
      { max_tokens: 1.5, messages: userMessage("x") },
      "max_tokens",
      "max_tokens must be an integer",
    ],
    ["n past 128", { n: 129, messages: userMessage("x") }, "n", "n must be an integer from 1 to 128"],
    [
      "stream_options that is not an object",
      { stream: true, stream_options: "yes", messages: userMessage("x") },
      "stream_options",
      "must be an object",
    ],
    [
      "a stream flag that is not a boolean",
      { stream: "yes", messages: userMessage("x") },
      "stream",
      "stream must be a boolean",
    ],
  ])("rejects %s with 400 naming the field", async (_what, payload, param, message) => {
    const { status, body } = await chat(gateway.url, payload);
    expect(status).toBe(400);
    expectOpenAIError(body, { type: "invalid_request_error", param });
    expect((body.error as { message: string }).message).toContain(message);
  });

  it.each([
    ["an array", "[1,2]"],
    ["a string", '"hello"'],
    ["null", "null"],
  ])("rejects %s as the body", async (_what, raw) => {
    const { status, body } = await chat(gateway.url, raw);
    expect(status).toBe(400);
    expectOpenAIError(body, { type: "invalid_request_error" });
  });

  it("rejects an empty body", async () => {
    const response = await fetch(`${gateway.url}/v1/chat/completions`, { method: "POST" });
    expect(response.status).toBe(400);
    expectOpenAIError((await response.json()) as Record<string, unknown>, { type: "invalid_request_error" });
  });

  it.each(["application/x-www-form-urlencoded", "text/plain", "multipart/form-data; boundary=x"])(
    "refuses a body sent as %s with 415: what a web page can send cross-site without a preflight",
    async (contentType) => {
      const response = await fetch(`${gateway.url}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": contentType },
        body: JSON.stringify({ messages: userMessage("Hello world") }),
      });
      expect(response.status).toBe(415);
      expect(response.headers.get("x-should-retry")).toBe("false");
      expectOpenAIError((await response.json()) as Record<string, unknown>, {
        type: "invalid_request_error",
        code: "unsupported_media_type",
      });
    },
  );

  it.each(["application/json", "application/json; charset=utf-8", "APPLICATION/JSON", "application/vnd.api+json"])(
    "reads a body sent as %s",
    async (contentType) => {
      const response = await fetch(`${gateway.url}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": contentType },
        body: JSON.stringify({ messages: userMessage("Hello world") }),
      });
      expect(response.status).toBe(200);
    },
  );

  it("reads a body sent without a Content-Type as JSON", async () => {
    const response = await fetch(`${gateway.url}/v1/chat/completions`, {
      method: "POST",
      body: new TextEncoder().encode(JSON.stringify({ messages: userMessage("Hello world") })),
    });
    expect(response.status).toBe(200);
  });

  it("allows an assistant turn without content", async () => {
    const { status } = await chat(gateway.url, {
      messages: [{ role: "assistant", content: null, tool_calls: [] }, ...userMessage("x")],
    });
    expect(status).toBe(200);
  });

  it("rejects a body over the limit with 413", async () => {
    const small = await startGateway(twoBackendConfig(mock.url), { maxBodyBytes: 1000 });
    try {
      const { status, body } = await chat(small.url, { messages: userMessage("x".repeat(2000)) });
      expect(status).toBe(413);
      expectOpenAIError(body, { type: "invalid_request_error", code: "payload_too_large" });
      expect((body.error as { message: string }).message).toContain("1000 bytes");
    } finally {
      await small.close();
    }
  });

  it("answers 404 for an unknown path", async () => {
    const response = await fetch(`${gateway.url}/v1/audio/speech`, { method: "POST" });
    expect(response.status).toBe(404);
    expectOpenAIError((await response.json()) as Record<string, unknown>, {
      type: "invalid_request_error",
      code: "unknown_url",
    });
    expect(response.headers.get("x-request-id")).not.toBeNull();
  });

  it.each([
    ["GET", "/v1/chat/completions", "POST"],
    ["DELETE", "/v1/models", "GET, HEAD"],
    ["POST", "/health", "GET, HEAD"],
  ])("answers 405 for %s %s", async (method, path, allow) => {
    const response = await fetch(`${gateway.url}${path}`, { method });
    expect(response.status).toBe(405);
    expect(response.headers.get("allow")).toBe(allow);
    expectOpenAIError((await response.json()) as Record<string, unknown>, {
      type: "invalid_request_error",
      code: "method_not_allowed",
    });
  });

  it("keeps serving others while bad requests pour in", async () => {
    const slow = chat(gateway.url, { model: "remote", messages: userMessage("slow"), mock: { delay_ms: 300 } });
    const bad = Array.from({ length: 50 }, (_, i) => chat(gateway.url, i % 2 === 0 ? "{oops" : { messages: 5 }));
    const results = await Promise.all(bad);
    expect(results.every((result) => result.status === 400)).toBe(true);
    const { status, body } = await slow;
    expect(status).toBe(200);
    expect(body).toMatchObject({ choices: [{ message: { content: "Remote: slow" } }] });
  });
});

describe("models and health", () => {
  it("lists the configured backends as models", async () => {
    const response = await fetch(`${gateway.url}/v1/models`);
    expect(response.status).toBe(200);
    const body = (await response.json()) as { object: string; data: Record<string, unknown>[] };
    expect(body.object).toBe("list");
    expect(body.data.map((model) => model.id)).toEqual(["local", "remote"]);
    for (const model of body.data) {
      expect(model).toEqual({
        id: model.id,
        object: "model",
        created: expect.any(Number),
        owned_by: expect.any(String),
      });
    }
  });

  it("retrieves one model, and 404s an unknown one", async () => {
    expect(await (await fetch(`${gateway.url}/v1/models/remote`)).json()).toMatchObject({
      id: "remote",
      object: "model",
    });
    const missing = await fetch(`${gateway.url}/v1/models/nope`);
    expect(missing.status).toBe(404);
    expect(await missing.json()).toMatchObject({ error: { code: "model_not_found", param: "model" } });
  });

  it("is alive and ready", async () => {
    expect((await fetch(`${gateway.url}/health`)).status).toBe(200);
    expect(await (await fetch(`${gateway.url}/ready`)).json()).toEqual({ status: "ready" });
  });

  it("is not ready once shutdown begins, while still alive", async () => {
    const draining = await startGateway(twoBackendConfig(mock.url));
    try {
      draining.deps.lifecycle.beginShutdown();
      const ready = await fetch(`${draining.url}/ready`);
      expect(ready.status).toBe(503);
      expect(ready.headers.get("connection")).toBe("close");
      expect((await fetch(`${draining.url}/health`)).status).toBe(200);
    } finally {
      await draining.close();
    }
  });
});

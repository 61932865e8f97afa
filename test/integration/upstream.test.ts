import OpenAI from "openai";
import { total } from "../support/exposition";
import { scrape } from "../support/metrics";
import {
  chat,
  type RunningGateway,
  type RunningMock,
  startGateway,
  startMock,
  twoBackendConfig,
  userMessage,
} from "../support/servers";
import { freePort } from "../support/ports";

let mock: RunningMock;
let gateway: RunningGateway;

beforeAll(async () => {
  mock = await startMock();
  // The breaker is off: these tests send one fault after another, and each must reach the upstream
  // (resilience.test.ts covers the breaker opening).
  gateway = await startGateway(twoBackendConfig(mock.url, "timeout: 0.5\ncircuit_breaker: false"));
});

afterAll(async () => {
  await gateway.close();
  await mock.close();
});

function remote(mockKnobs: Record<string, unknown>) {
  return { model: "remote", messages: userMessage("Hello world"), mock: mockKnobs };
}

describe("upstream faults become honest OpenAI errors", () => {
  it.each([
    ["a reset connection", { fault: "reset" }, 502, "upstream_unreachable"],
    ["a body that is not JSON", { fault: "malformed" }, 502, "upstream_invalid_response"],
    ["an answer without choices", { fault: "empty" }, 502, "upstream_invalid_response"],
    ["an answer nested a million levels deep", { fault: "deep" }, 502, "upstream_invalid_response"],
    ["an upstream 500", { status: 500 }, 502, "upstream_http_error"],
    ["an upstream 503", { status: 503 }, 502, "upstream_http_error"],
    ["an upstream 401 (our key is wrong, not the client's)", { status: 401 }, 502, "upstream_http_error"],
    ["an answer slower than the timeout", { delay_ms: 2000 }, 504, "upstream_timeout"],
    ["an upstream that never answers", { fault: "hang" }, 504, "upstream_timeout"],
  ])("%s (%j) -> %i %s", async (_what, knobs, status, code) => {
    const answer = await chat(gateway.url, remote(knobs));
    expect(answer.status).toBe(status);
    expect(answer.body).toEqual({
      error: { message: expect.stringContaining("Backend 'remote'"), type: "upstream_error", param: null, code },
    });
    expect(answer.headers.get("x-request-id")).not.toBeNull();
  });

  it("passes an upstream 400 on with its status and message", async () => {
    const answer = await chat(gateway.url, remote({ status: 400 }));
    expect(answer.status).toBe(400);
    expect(answer.body).toMatchObject({ error: { type: "invalid_request_error", code: "upstream_client_error" } });
    expect((answer.body.error as { message: string }).message).toContain("mock-remote was told to answer 400");
  });

  it("passes an upstream 429 on with its retry-after", async () => {
    const answer = await chat(gateway.url, remote({ status: 429, retry_after: "7" }));
    expect(answer.status).toBe(429);
    expect(answer.headers.get("retry-after")).toBe("7");
    expect(answer.body).toMatchObject({ error: { type: "rate_limit_error" } });
  });

  it("answers 502 when nothing listens at the backend's address", async () => {
    const closed = await freePort();
    const lonely = await startGateway(twoBackendConfig(`http://127.0.0.1:${closed}`));
    try {
      const answer = await chat(lonely.url, { model: "remote", messages: userMessage("x") });
      expect(answer.status).toBe(502);
      expect(answer.body).toMatchObject({ error: { code: "upstream_unreachable", type: "upstream_error" } });
      expect((answer.body.error as { message: string }).message).toContain("ECONNREFUSED");
    } finally {
      await lonely.close();
    }
  });

  it("gives up at the timeout, and the next request is unaffected", async () => {
    const started = performance.now();
    const [slow, fast] = await Promise.all([
      chat(gateway.url, remote({ fault: "hang" })),
      chat(gateway.url, remote({})),
    ]);
    expect(slow.status).toBe(504);
    expect(fast.status).toBe(200);
    // Generous upper bound: the point is that a hung upstream does not hang the client for long.
    expect(performance.now() - started).toBeLessThan(5000);
  });

  it("aborts the upstream request when the client goes away", async () => {
    const before = mock.seen.length;
    const closedUpstream = new Promise<void>((resolve) => {
      mock.server.once("request", (_req, res) => res.once("close", () => resolve()));
    });
    const controller = new AbortController();
    const pending = fetch(`${gateway.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(remote({ delay_ms: 5000 })),
      signal: controller.signal,
    }).catch((error: unknown) => error);
    for (let i = 0; i < 400 && mock.seen.length === before; i++) await new Promise((resolve) => setTimeout(resolve, 5));
    expect(mock.seen.length).toBeGreaterThan(before);
    controller.abort();
    await pending;
    await closedUpstream; // jest's timeout bounds this wait
    await new Promise((resolve) => setTimeout(resolve, 50));
    const line = gateway.logLines().find((entry) => entry.message === "request" && entry.status === 499);
    expect(line).toMatchObject({ backend: "remote" });
  });
});

describe("http backend options", () => {
  it("sends the configured upstream model instead of the client's", async () => {
    const renamed = await startGateway(twoBackendConfig(mock.url, "model: llama-3.1-8b"));
    try {
      const answer = await chat(
        renamed.url,
        { model: "remote", messages: userMessage("x") },
        { "x-request-id": "model-override-1" },
      );
      expect(answer.body).toMatchObject({ model: "remote", backend: "remote" });
      const seen = mock.seen.find((request) => request.headers["x-request-id"] === "model-override-1");
      expect((seen?.body as { model: string }).model).toBe("llama-3.1-8b");
    } finally {
      await renamed.close();
    }
  });

  it("sends the api_key_env key upstream and never shows it in logs or errors", async () => {
    const key = "sk-upstream-secret-4242";
    const keyed = await startGateway(twoBackendConfig(mock.url, "api_key_env: REMOTE_KEY"), {
      env: { REMOTE_KEY: key },
    });
    try {
      const ok = await chat(
        keyed.url,
        { model: "remote", messages: userMessage("x") },
        { "x-request-id": "with-key-1" },
      );
      const failed = await chat(keyed.url, remote({ status: 401 }));
      const seen = mock.seen.find((request) => request.headers["x-request-id"] === "with-key-1");
      expect(seen?.headers.authorization).toBe(`Bearer ${key}`);
      expect(ok.status).toBe(200);
      expect(failed.status).toBe(502);
      expect(JSON.stringify(failed.body)).not.toContain(key);
      expect(keyed.logText()).not.toContain(key);
      expect(keyed.logText()).toContain("with-key-1");
    } finally {
      await keyed.close();
    }
  });
});

describe("chained gateways", () => {
  it("works with another instance of this gateway as the upstream", async () => {
    const front = await startGateway(twoBackendConfig(gateway.url, "model: remote"));
    try {
      const answer = await chat(
        front.url,
        { model: "remote", messages: userMessage("Hello world") },
        { "x-request-id": "chain-1" },
      );
      expect(answer.status).toBe(200);
      expect(answer.body).toMatchObject({
        backend: "remote",
        choices: [{ message: { content: "Remote: Hello world" } }],
      });
      expect(answer.headers.get("x-request-id")).toBe("chain-1");
      // The id crossed both hops, so the logs of both gateways and the upstream line up.
      expect(gateway.logLines().some((line) => line.requestId === "chain-1")).toBe(true);
      expect(mock.seen.some((request) => request.headers["x-request-id"] === "chain-1")).toBe(true);
    } finally {
      await front.close();
    }
  });
});

describe("the official openai SDK as a client", () => {
  function client(): OpenAI {
    return new OpenAI({ baseURL: `${gateway.url}/v1`, apiKey: "unused", maxRetries: 0 });
  }

  it("reads a completion from each backend", async () => {
    const local = await client().chat.completions.create({ model: "local", messages: userMessage("Hello world") });
    expect(local.choices[0]?.message.content).toBe("Echo: Hello world");
    expect(local.usage).toEqual({ prompt_tokens: 2, completion_tokens: 3, total_tokens: 5 });
    const viaRemote = await client().chat.completions.create({ model: "remote", messages: userMessage("Hello world") });
    expect(viaRemote.choices[0]?.message.content).toBe("Remote: Hello world");
  });

  it("lists models", async () => {
    const ids: string[] = [];
    for await (const model of client().models.list()) ids.push(model.id);
    expect(ids).toEqual(["local", "remote"]);
  });

  it("surfaces a gateway error as the matching SDK error class with the request id", async () => {
    const error = await client()
      .chat.completions.create({ model: "local", messages: [{ role: "user", content: 5 as unknown as string }] })
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(OpenAI.BadRequestError);
    const apiError = error as InstanceType<typeof OpenAI.BadRequestError>;
    expect(apiError.param).toBe("messages[0].content");
    expect(apiError.requestID).toMatch(/^[0-9a-f-]{36}$/);
  });

  it("surfaces an upstream outage as an InternalServerError", async () => {
    const error = await client()
      .chat.completions.create({
        model: "remote",
        messages: userMessage("x"),
        ...({ mock: { fault: "reset" } } as object),
      })
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(OpenAI.InternalServerError);
    expect((error as InstanceType<typeof OpenAI.InternalServerError>).status).toBe(502);
  });
});

describe("size limits on upstream answers", () => {
  let limited: RunningGateway;
  let budgeted: RunningGateway;

  beforeAll(async () => {
    limited = await startGateway(twoBackendConfig(mock.url, "max_response_bytes: 65536\ncircuit_breaker: false"));
    // 100 KB for all answers read whole together (MAX_BUFFERED_BYTES); a breaker that opens on one failure.
    budgeted = await startGateway(twoBackendConfig(mock.url, "circuit_breaker: {failures: 1, cooldown: 60}"), {
      maxBufferedBytes: 100_000,
    });
  });

  afterAll(async () => {
    await limited.close();
    await budgeted.close();
  });

  it("streams an answer far larger in total than max_response_bytes, whole", async () => {
    const words = Array.from({ length: 100 }, (_, index) => `word${index}`).join(" ");
    const response = await fetch(`${limited.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "remote", stream: true, messages: userMessage(words), mock: { chunks: 5000 } }),
    });
    const text = await response.text();
    expect(response.status).toBe(200);
    expect(Buffer.byteLength(text)).toBeGreaterThan(1_000_000);
    const events = text.split("\n\n").filter((event) => event.startsWith("data: {"));
    expect(events.filter((event) => event.includes('"content":"')).length).toBeGreaterThanOrEqual(5000);
    expect(text).not.toContain('"error"');
    expect(text.endsWith("data: [DONE]\n\n")).toBe(true);
  });

  it("answers 502 upstream_invalid_response for a non-streamed answer over max_response_bytes, counted as invalid_response", async () => {
    const labels = { backend: "remote", reason: "invalid_response" };
    const before = total(await scrape(limited.url), "gateway_backend_errors_total", labels);
    const answer = await chat(limited.url, { model: "remote", messages: userMessage("y".repeat(70_000)) });
    expect(answer.status).toBe(502);
    expect(answer.body).toMatchObject({
      error: { code: "upstream_invalid_response", message: expect.stringContaining("larger than 65536 bytes") },
    });
    expect(total(await scrape(limited.url), "gateway_backend_errors_total", labels) - before).toBe(1);
  });

  it("answers 503 response_budget_exhausted past MAX_BUFFERED_BYTES, without opening the backend's breaker", async () => {
    const answer = await chat(budgeted.url, { model: "remote", messages: userMessage("y".repeat(150_000)) });
    expect(answer.status).toBe(503);
    expect(answer.headers.get("retry-after")).toBe("1");
    expect(answer.body).toMatchObject({ error: { type: "server_error", code: "response_budget_exhausted" } });
    // With failures: 1 a counted failure would have opened the breaker: the next call would get backend_unavailable.
    const next = await chat(budgeted.url, { model: "remote", messages: userMessage("small") });
    expect(next.status).toBe(200);
  });
});

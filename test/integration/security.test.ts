/**
 * Gateway API keys, per-client limits, concurrency caps and backend allowlists, through the real app and a
 * real mock-remote, as clients (curl-like fetch and the official openai SDK) see them.
 */
import { createHash } from "node:crypto";
import { connect } from "node:net";
import OpenAI from "openai";
import { type Sample, total } from "../support/exposition";
import { scrape, scrapeUntil } from "../support/metrics";
import {
  type Answer,
  bearer,
  chat,
  type RunningGateway,
  type RunningMock,
  startGateway,
  startMock,
  userMessage,
} from "../support/servers";

const APP_KEY = "gw-app-0123456789abcdef";
const LIMITED_KEY = "gw-limited-fedcba9876543210";
const HASHED_KEY = "gw-hashed-5555555555555555";
const METRICS_KEY = "gw-metrics-aaaaaaaaaaaaaaaa";
const UPSTREAM_KEY = "sk-upstream-9999999999999999";

function sha256Hex(text: string): string {
  return createHash("sha256").update(text).digest("hex");
}

const ENV = { APP_KEY, LIMITED_KEY, METRICS_KEY, UPSTREAM_KEY };

function authConfig(mockUrl: string, extra: string[] = []): string {
  return [
    "default_backend: local",
    "backends:",
    "  - name: local",
    "    type: echo",
    "  - name: remote",
    "    type: http",
    `    url: ${mockUrl}`,
    "    api_key_env: UPSTREAM_KEY",
    "    retries: 0",
    "    circuit_breaker: false",
    "auth:",
    "  keys:",
    "    - name: app",
    "      key_env: APP_KEY",
    "    - name: limited",
    "      key_env: LIMITED_KEY",
    "      backends: [local]",
    "    - name: hashed",
    `      sha256: ${sha256Hex(HASHED_KEY)}`,
    ...extra,
    "",
  ].join("\n");
}

function expectError(answer: Answer, status: number, type: string, code: string, param: string | null = null): void {
  expect(answer.status).toBe(status);
  expect(answer.body).toEqual({ error: { message: expect.any(String), type, param, code } });
}

describe("with auth on", () => {
  let mock: RunningMock;
  let gateway: RunningGateway;

  beforeAll(async () => {
    mock = await startMock();
    gateway = await startGateway(authConfig(mock.url, ["  metrics_key:", "    key_env: METRICS_KEY"]), { env: ENV });
  });

  afterAll(async () => {
    await gateway.close();
    await mock.close();
  });

  it("refuses a request without a key: 401, OpenAI's error body, not worth retrying", async () => {
    const answer = await chat(gateway.url, { messages: userMessage("Hello") });
    expectError(answer, 401, "invalid_request_error", "missing_api_key");
    expect(answer.headers.get("x-should-retry")).toBe("false");
    expect(answer.headers.get("www-authenticate")).toMatch(/^Bearer/);
  });

  it.each([
    ["an unknown key", `Bearer gw-unknown-0000000000000000`],
    ["a known key with one character changed", `Bearer ${APP_KEY.slice(0, -1)}0`],
    ["a known key with something after it", `Bearer ${APP_KEY}x`],
    ["a known key in another case", `Bearer ${APP_KEY.toUpperCase()}`],
    ["the metrics key", `Bearer ${METRICS_KEY}`],
  ])("refuses %s with 401 invalid_api_key, and never quotes it", async (_what, authorization) => {
    const answer = await chat(gateway.url, { messages: userMessage("Hello") }, { authorization });
    expectError(answer, 401, "invalid_request_error", "invalid_api_key");
    expect(JSON.stringify(answer.body)).not.toContain(authorization.slice("Bearer ".length));
  });

  it("treats a non-Bearer Authorization header as no key", async () => {
    const answer = await chat(
      gateway.url,
      { messages: userMessage("Hello") },
      { authorization: `Basic ${Buffer.from(`u:${APP_KEY}`).toString("base64")}` },
    );
    expectError(answer, 401, "invalid_request_error", "missing_api_key");
  });

  it.each([
    ["from key_env", APP_KEY],
    ["from a sha256 in the config", HASHED_KEY],
  ])("answers a request with a key %s", async (_how, key) => {
    const answer = await chat(gateway.url, { model: "local", messages: userMessage("Hello") }, bearer(key));
    expect(answer.status).toBe(200);
    expect(answer.body).toMatchObject({ backend: "local", choices: [{ message: { content: "Echo: Hello" } }] });
  });

  it("accepts the scheme in any case, as HTTP says", async () => {
    expect(
      (await chat(gateway.url, { messages: userMessage("Hello") }, { authorization: `bearer ${APP_KEY}` })).status,
    ).toBe(200);
  });

  it("guards every /v1 route, known or not, so the routes themselves are not revealed", async () => {
    expect((await fetch(`${gateway.url}/v1/models`)).status).toBe(401);
    expect((await fetch(`${gateway.url}/v1/nothing-here`)).status).toBe(401);
    expect((await fetch(`${gateway.url}/v1/models`, { headers: bearer(APP_KEY) })).status).toBe(200);
    expect((await fetch(`${gateway.url}/v1/nothing-here`, { headers: bearer(APP_KEY) })).status).toBe(404);
  });

  it("keeps /health and /ready open for orchestrators", async () => {
    expect((await fetch(`${gateway.url}/health`)).status).toBe(200);
    expect((await fetch(`${gateway.url}/ready`)).status).toBe(200);
  });

  it("puts /metrics behind its own key when metrics_key is set: API keys do not open it", async () => {
    expect((await fetch(`${gateway.url}/metrics`)).status).toBe(401);
    expect((await fetch(`${gateway.url}/metrics`, { headers: bearer(APP_KEY) })).status).toBe(401);
    const response = await fetch(`${gateway.url}/metrics`, { headers: bearer(METRICS_KEY) });
    expect(response.status).toBe(200);
    expect(await response.text()).toContain("gateway_requests_total");
  });

  it("sends the backend's own upstream key upstream, never the client's gateway key", async () => {
    const marker = `forward-${Date.now()}`;
    const answer = await chat(gateway.url, { model: "remote", messages: userMessage(marker) }, bearer(APP_KEY));
    expect(answer.status).toBe(200);
    const forwarded = mock.seen.filter((seen) => JSON.stringify(seen.body).includes(marker));
    expect(forwarded).toHaveLength(1);
    expect(forwarded[0]?.headers.authorization).toBe(`Bearer ${UPSTREAM_KEY}`);
    expect(JSON.stringify(forwarded[0])).not.toContain(APP_KEY);
  });

  it("redacts the upstream key from an upstream error that quotes it", async () => {
    const answer = await chat(
      gateway.url,
      { model: "remote", messages: userMessage("Hello"), mock: { status: 401 } },
      bearer(APP_KEY),
    );
    expect(answer.status).toBe(502);
    const message = (answer.body.error as { message: string }).message;
    expect(message).toContain("Incorrect API key provided: [redacted]");
    expect(message).not.toContain(UPSTREAM_KEY);
  });

  describe("a key limited to some backends", () => {
    it("may use those", async () => {
      const answer = await chat(gateway.url, { model: "local", messages: userMessage("Hello") }, bearer(LIMITED_KEY));
      expect(answer.status).toBe(200);
    });

    it("gets 403 for any other, before the backend is called", async () => {
      const before = mock.seen.length;
      const answer = await chat(gateway.url, { model: "remote", messages: userMessage("Hello") }, bearer(LIMITED_KEY));
      expectError(answer, 403, "invalid_request_error", "model_not_allowed", "model");
      expect(answer.headers.get("x-should-retry")).toBe("false");
      expect(mock.seen.length).toBe(before);
    });

    it("sees only its backends in /v1/models", async () => {
      const list = (await (await fetch(`${gateway.url}/v1/models`, { headers: bearer(LIMITED_KEY) })).json()) as {
        data: { id: string }[];
      };
      expect(list.data.map((model) => model.id)).toEqual(["local"]);
      expect((await fetch(`${gateway.url}/v1/models/remote`, { headers: bearer(LIMITED_KEY) })).status).toBe(404);
      const all = (await (await fetch(`${gateway.url}/v1/models`, { headers: bearer(APP_KEY) })).json()) as {
        data: { id: string }[];
      };
      expect(all.data.map((model) => model.id)).toEqual(["local", "remote"]);
    });
  });

  it("logs the key's name with each request, never the key", async () => {
    const requestId = `log-${Date.now()}`;
    await chat(gateway.url, { messages: userMessage("Hello") }, { ...bearer(APP_KEY), "x-request-id": requestId });
    let line: Record<string, unknown> | undefined;
    for (let attempt = 0; attempt < 100 && line === undefined; attempt++) {
      line = gateway.logLines().find((entry) => entry.requestId === requestId && entry.message === "request");
      if (line === undefined) await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(line).toMatchObject({ key: "app", status: 200 });
    expect(gateway.logText()).not.toContain(APP_KEY);
  });

  it("counts requests per key name and refusals by reason in /metrics", async () => {
    const headers = bearer(METRICS_KEY);
    const before = await scrape(gateway.url, headers);
    await chat(gateway.url, { messages: userMessage("Hello") }, bearer(HASHED_KEY));
    await chat(gateway.url, { messages: userMessage("Hello") });
    await chat(gateway.url, { model: "remote", messages: userMessage("Hello") }, bearer(LIMITED_KEY));
    const count = (samples: Sample[], name: string, labels: Record<string, string>) =>
      total(samples, name, labels) - total(before, name, labels);
    const after = await scrapeUntil(
      gateway.url,
      (samples) => count(samples, "gateway_key_requests_total", { key: "limited", code: "403" }) >= 1,
      { headers },
    );
    expect(count(after, "gateway_key_requests_total", { key: "hashed", code: "200" })).toBe(1);
    expect(count(after, "gateway_key_tokens_total", { key: "hashed" })).toBeGreaterThan(0);
    expect(count(after, "gateway_key_requests_total", { key: "limited", code: "403" })).toBe(1);
    expect(count(after, "gateway_rejected_requests_total", { key: "none", reason: "missing_api_key" })).toBe(1);
    expect(count(after, "gateway_rejected_requests_total", { key: "limited", reason: "model_not_allowed" })).toBe(1);
    // Only configured names (and 'none') ever label a series.
    const keys = new Set(
      after
        .filter((sample) => sample.name.startsWith("gateway_key_") || sample.name === "gateway_rejected_requests_total")
        .map((sample) => sample.labels.key),
    );
    expect([...keys].sort()).toEqual(["app", "hashed", "limited", "none"].filter((key) => keys.has(key)));
    expect(keys.has("app")).toBe(true);
  });

  describe("through the official openai SDK", () => {
    it("works with the gateway key as the SDK's apiKey", async () => {
      const client = new OpenAI({ apiKey: APP_KEY, baseURL: `${gateway.url}/v1`, maxRetries: 0 });
      const completion = await client.chat.completions.create({ model: "local", messages: userMessage("Hello") });
      expect(completion.choices[0]?.message.content).toBe("Echo: Hello");
    });

    it("raises AuthenticationError for a wrong key, without retrying", async () => {
      let calls = 0;
      const counting: typeof fetch = (input, init) => {
        calls++;
        return fetch(input, init);
      };
      const client = new OpenAI({
        apiKey: "gw-wrong-0000000000000000",
        baseURL: `${gateway.url}/v1`,
        maxRetries: 2,
        fetch: counting,
      });
      await expect(
        client.chat.completions.create({ model: "local", messages: userMessage("Hello") }),
      ).rejects.toBeInstanceOf(OpenAI.AuthenticationError);
      expect(calls).toBe(1);
    });
  });
});

describe("limits", () => {
  let mock: RunningMock;
  const gateways: RunningGateway[] = [];

  beforeAll(async () => {
    mock = await startMock();
  });

  afterAll(async () => {
    await Promise.all(gateways.map((gateway) => gateway.close()));
    await mock.close();
  });

  async function gatewayWith(extra: string[], withAuth = true): Promise<RunningGateway> {
    const yaml = withAuth
      ? authConfig(mock.url, extra)
      : [
          `default_backend: local`,
          `backends:`,
          `  - name: local`,
          `    type: echo`,
          `  - name: remote`,
          `    type: http`,
          `    url: ${mock.url}`,
          ...extra,
          "",
        ].join("\n");
    const gateway = await startGateway(yaml, { env: ENV });
    gateways.push(gateway);
    return gateway;
  }

  it("answers 429 rate_limit_error with retry-after once a key's requests per minute are used, other keys unaffected", async () => {
    const gateway = await gatewayWith(["limits:", "  requests_per_minute: 2"]);
    for (let i = 0; i < 2; i++)
      expect((await chat(gateway.url, { messages: userMessage("Hello") }, bearer(APP_KEY))).status).toBe(200);
    const limited = await chat(gateway.url, { messages: userMessage("Hello") }, bearer(APP_KEY));
    expectError(limited, 429, "rate_limit_error", "rate_limit_exceeded");
    const wait = Number(limited.headers.get("retry-after"));
    expect(wait).toBeGreaterThanOrEqual(1);
    expect(wait).toBeLessThanOrEqual(60);
    expect(limited.headers.get("x-ratelimit-limit-requests")).toBe("2");
    // Retryable: the SDK waits retry-after and tries again.
    expect(limited.headers.get("x-should-retry")).toBeNull();
    expect((await chat(gateway.url, { messages: userMessage("Hello") }, bearer(HASHED_KEY))).status).toBe(200);
    const samples = await scrape(gateway.url);
    expect(total(samples, "gateway_rejected_requests_total", { key: "app", reason: "requests_per_minute" })).toBe(1);
  });

  it("gives a key its own limits instead of the defaults", async () => {
    const gateway = await gatewayWith([
      "      limits:",
      "        requests_per_minute: 1",
      "limits:",
      "  requests_per_minute: 100",
    ]);
    // The extra lines land on the `hashed` key (the last one in the list).
    expect((await chat(gateway.url, { messages: userMessage("Hello") }, bearer(HASHED_KEY))).status).toBe(200);
    expect((await chat(gateway.url, { messages: userMessage("Hello") }, bearer(HASHED_KEY))).status).toBe(429);
    for (let i = 0; i < 3; i++)
      expect((await chat(gateway.url, { messages: userMessage("Hello") }, bearer(APP_KEY))).status).toBe(200);
  });

  it("refuses once a key's tokens per minute are used, counting what answers actually used", async () => {
    const gateway = await gatewayWith(["limits:", "  tokens_per_minute: 10"]);
    // The echo backend's usage: 5 prompt words in, "Echo: " + 5 words out: 11 tokens, over 10 at once.
    const first = await chat(gateway.url, { messages: userMessage("one two three four five") }, bearer(APP_KEY));
    expect(first.status).toBe(200);
    expect((first.body.usage as { total_tokens: number }).total_tokens).toBeGreaterThanOrEqual(10);
    let second: Answer | undefined;
    // The tokens are charged when the first response closes on the server: bounded wait for that.
    for (let attempt = 0; attempt < 50; attempt++) {
      second = await chat(gateway.url, { messages: userMessage("Hi") }, bearer(APP_KEY));
      if (second.status === 429) break;
    }
    expect(second?.status).toBe(429);
    expect(second?.headers.get("x-ratelimit-limit-tokens")).toBe("10");
    expect(second?.body).toMatchObject({ error: { type: "rate_limit_error", code: "rate_limit_exceeded" } });
  });

  it("reserves a request's max_tokens while it runs: concurrent requests cannot all pass a tokens limit", async () => {
    const gateway = await gatewayWith(["limits:", "  tokens_per_minute: 100"]);
    const slow = chat(
      gateway.url,
      { model: "remote", max_tokens: 80, messages: userMessage("slow"), mock: { delay_ms: 400 } },
      bearer(APP_KEY),
    );
    await new Promise((resolve) => setTimeout(resolve, 100));
    // Nothing is charged yet, but 80 of the 100 are reserved by the request in flight.
    const refused = await chat(gateway.url, { max_tokens: 80, messages: userMessage("Hello") }, bearer(APP_KEY));
    expect(refused.status).toBe(429);
    expect(refused.headers.get("x-ratelimit-limit-tokens")).toBe("100");
    expect((await slow).status).toBe(200);
    // Settled to what it used (a few tokens): the next one fits.
    let next = 0;
    for (let attempt = 0; attempt < 50 && next !== 200; attempt++)
      next = (await chat(gateway.url, { max_tokens: 80, messages: userMessage("Hello") }, bearer(APP_KEY))).status;
    expect(next).toBe(200);
  });

  it("charges a streamed answer's tokens too", async () => {
    const gateway = await gatewayWith(["limits:", "  tokens_per_minute: 10"]);
    const response = await fetch(`${gateway.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json", ...bearer(APP_KEY) },
      body: JSON.stringify({ model: "remote", stream: true, messages: userMessage("one two three four five six") }),
    });
    expect(response.status).toBe(200);
    await response.text();
    let status = 0;
    for (let attempt = 0; attempt < 50 && status !== 429; attempt++)
      status = (await chat(gateway.url, { messages: userMessage("Hi") }, bearer(APP_KEY))).status;
    expect(status).toBe(429);
  });

  it("answers 503 with retry-after when a key has its most requests in flight, and admits again once one ends", async () => {
    const gateway = await gatewayWith(["limits:", "  concurrent_requests: 1"]);
    const slow = chat(
      gateway.url,
      { model: "remote", messages: userMessage("slow"), mock: { delay_ms: 400 } },
      bearer(APP_KEY),
    );
    await new Promise((resolve) => setTimeout(resolve, 100));
    const refused = await chat(gateway.url, { messages: userMessage("Hello") }, bearer(APP_KEY));
    expectError(refused, 503, "server_error", "too_many_concurrent_requests");
    expect(refused.headers.get("retry-after")).toBe("1");
    // Another key has its own allowance.
    expect((await chat(gateway.url, { messages: userMessage("Hello") }, bearer(HASHED_KEY))).status).toBe(200);
    expect((await slow).status).toBe(200);
    let again = 0;
    for (let attempt = 0; attempt < 50 && again !== 200; attempt++)
      again = (await chat(gateway.url, { messages: userMessage("Hello") }, bearer(APP_KEY))).status;
    expect(again).toBe(200);
  });

  it("caps requests in flight over all clients with max_concurrent_requests", async () => {
    // The client's own limit lifts its default share (half the slots), so the gateway-wide cap is what answers.
    const gateway = await gatewayWith(["max_concurrent_requests: 2", "limits:", "  concurrent_requests: 2"], false);
    const slow = [1, 2].map(() =>
      chat(gateway.url, { model: "remote", messages: userMessage("slow"), mock: { delay_ms: 400 } }),
    );
    await new Promise((resolve) => setTimeout(resolve, 100));
    const refused = await chat(gateway.url, { messages: userMessage("Hello") });
    expectError(refused, 503, "server_error", "too_many_concurrent_requests");
    for (const answer of await Promise.all(slow)) expect(answer.status).toBe(200);
    const samples = await scrape(gateway.url);
    expect(total(samples, "gateway_rejected_requests_total", { key: "none", reason: "gateway_concurrency" })).toBe(1);
  });

  it("limits each client address when auth is off", async () => {
    const gateway = await gatewayWith(["limits:", "  requests_per_minute: 1"], false);
    expect((await chat(gateway.url, { messages: userMessage("Hello") })).status).toBe(200);
    const limited = await chat(gateway.url, { messages: userMessage("Hello") });
    expectError(limited, 429, "rate_limit_error", "rate_limit_exceeded");
    expect((limited.body.error as { message: string }).message).toContain("this client address");
  });

  it("refuses before reading the body: a limited client's huge body is not parsed", async () => {
    const gateway = await gatewayWith(["limits:", "  requests_per_minute: 1"], false);
    expect((await chat(gateway.url, { messages: userMessage("Hello") })).status).toBe(200);
    // Invalid JSON would be a 400 if it were read; the limit answers first.
    expect((await chat(gateway.url, "{ not json")).status).toBe(429);
  });
});

describe("hardening", () => {
  let gateway: RunningGateway;

  beforeAll(async () => {
    gateway = await startGateway(
      ["default_backend: local", "backends:", "  - name: local", "    type: echo", ""].join("\n"),
    );
  });

  afterAll(async () => {
    await gateway.close();
  });

  it("does not say what it runs on", async () => {
    const answer = await chat(gateway.url, { messages: userMessage("Hello") });
    expect(answer.headers.get("x-powered-by")).toBeNull();
  });

  it("refuses oversized request headers with 431 and keeps serving", async () => {
    const response = await fetch(`${gateway.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-padding": "x".repeat(64 * 1024) },
      body: JSON.stringify({ messages: userMessage("Hello") }),
    });
    expect(response.status).toBe(431);
    expect(await response.json()).toEqual({
      error: {
        message: expect.stringContaining("16 KiB"),
        type: "invalid_request_error",
        param: null,
        code: "headers_too_large",
      },
    });
    expect((await chat(gateway.url, { messages: userMessage("Hello") })).status).toBe(200);
  });

  it("answers a request that is not HTTP with 400 and an OpenAI error body", async () => {
    const reply = await new Promise<string>((resolveReply, rejectReply) => {
      const socket = connect(gateway.port, "127.0.0.1", () => socket.write("HELLO / NOT-HTTP\r\n\r\n"));
      let text = "";
      socket.setTimeout(5000, () => socket.destroy(new Error("no answer within 5 s")));
      socket.on("data", (chunk: Buffer) => (text += chunk.toString()));
      socket.on("close", () => resolveReply(text));
      socket.on("error", rejectReply);
    });
    expect(reply).toMatch(/^HTTP\/1\.1 400 /);
    expect(JSON.parse(reply.slice(reply.indexOf("\r\n\r\n") + 4))).toMatchObject({
      error: { type: "invalid_request_error", code: "malformed_request" },
    });
  });
});

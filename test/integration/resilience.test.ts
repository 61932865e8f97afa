import { createServer as createHttpServer } from "node:http";
import { connect, createServer, type Server, type Socket } from "node:net";
import OpenAI from "openai";
import { total } from "../support/exposition";
import { scrape, scrapeUntil } from "../support/metrics";
import {
  type Answer,
  chat,
  type RunningGateway,
  type RunningMock,
  startGateway,
  startMock,
  userMessage,
} from "../support/servers";
import { freePort } from "../support/ports";

let mock: RunningMock;
/** A loopback port nothing listens on: a backend that is down. */
let closedPort: number;
const gateways: RunningGateway[] = [];

beforeAll(async () => {
  mock = await startMock();
  closedPort = await freePort();
});

afterAll(async () => {
  await Promise.all(gateways.map((gateway) => gateway.close()));
  await mock.close();
});

/** A gateway whose config is `local` (echo, the default) plus the given backend entries. */
async function gatewayWith(backends: string, options: { maxHops?: number } = {}): Promise<RunningGateway> {
  const gateway = await startGateway(
    `default_backend: local\nbackends:\n  - name: local\n    type: echo\n${backends}`,
    options,
  );
  gateways.push(gateway);
  return gateway;
}

/**
 * One http backend entry, for mock-remote unless told otherwise. Its upstream model is `{name}-upstream`
 * (unless `lines` sets one), so mock.seen shows which backend made each call.
 */
function httpBackend(name: string, lines: string[] = [], url = mock.url): string {
  const model = lines.some((line) => line.startsWith("model:")) ? [] : [`model: ${name}-upstream`];
  return (
    [
      `  - name: ${name}`,
      "    type: http",
      `    url: ${url}`,
      ...[...model, ...lines].map((line) => `    ${line}`),
    ].join("\n") + "\n"
  );
}

let sequence = 0;

interface Asked extends Answer {
  /** What mock-remote received for this request (all tries, all backends), in order. */
  readonly upstream: { model: string; hops: string | undefined }[];
  readonly ms: number;
}

/** A non-streamed request with mock-remote knobs, under a fresh request id so its upstream calls can be found. */
async function ask(
  gateway: RunningGateway,
  model: string,
  knobs: Record<string, unknown> = {},
  headers: Record<string, string> = {},
): Promise<Asked> {
  const requestId = `resilience-${++sequence}`;
  const started = performance.now();
  const answer = await chat(
    gateway.url,
    { model, messages: userMessage("Hello world"), mock: knobs },
    { "x-request-id": requestId, ...headers },
  );
  return { ...answer, ms: performance.now() - started, upstream: upstreamCalls(requestId) };
}

function upstreamCalls(requestId: string): { model: string; hops: string | undefined }[] {
  return mock.seen
    .filter((seen) => seen.headers["x-request-id"] === requestId)
    .map((seen) => ({
      model: String((seen.body as { model?: unknown }).model),
      hops: seen.headers["x-gateway-hops"] as string | undefined,
    }));
}

/** A streamed request: the status and the parsed `data:` payloads. */
async function askStream(
  gateway: RunningGateway,
  model: string,
  knobs: Record<string, unknown>,
): Promise<{ status: number; events: unknown[]; requestId: string }> {
  const requestId = `resilience-${++sequence}`;
  const response = await fetch(`${gateway.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-request-id": requestId },
    body: JSON.stringify({ model, stream: true, messages: userMessage("Hello world"), mock: knobs }),
    signal: AbortSignal.timeout(10_000),
  });
  const text = await response.text();
  if (response.status !== 200) return { status: response.status, events: [JSON.parse(text)], requestId };
  const events = text
    .split("\n\n")
    .filter((event) => event.startsWith("data: "))
    .map((event) => event.slice("data: ".length))
    .map((data) => (data === "[DONE]" ? data : (JSON.parse(data) as unknown)));
  return { status: response.status, events, requestId };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("errors as clients see them", () => {
  let gateway: RunningGateway;
  beforeAll(async () => {
    gateway = await gatewayWith(
      httpBackend("remote", ["timeout: 0.5", "circuit_breaker: false"]) +
        httpBackend("down", [], `http://127.0.0.1:${closedPort}`),
    );
  });

  it("passes an upstream 429 on as 429 with its retry-after, and lets clients retry", async () => {
    const answer = await ask(gateway, "remote", { status: 429, retry_after: "3" });
    expect(answer.status).toBe(429);
    expect(answer.headers.get("retry-after")).toBe("3");
    expect(answer.headers.get("x-should-retry")).toBeNull();
    expect(answer.body).toMatchObject({ error: { type: "rate_limit_error", code: "upstream_client_error" } });
  });

  it("turns a retry-after given as an HTTP date into seconds", async () => {
    const answer = await ask(gateway, "remote", {
      status: 429,
      retry_after: new Date(Date.now() + 30_000).toUTCString(),
    });
    expect(Number(answer.headers.get("retry-after"))).toBeGreaterThanOrEqual(28);
    expect(Number(answer.headers.get("retry-after"))).toBeLessThanOrEqual(30);
  });

  it.each([400, 404, 413, 422])(
    "passes an upstream %i on with its message, saying a retry cannot help",
    async (status) => {
      const answer = await ask(gateway, "remote", { status });
      expect(answer.status).toBe(status);
      expect((answer.body.error as { message: string }).message).toContain(`mock-remote was told to answer ${status}`);
      expect(answer.headers.get("x-should-retry")).toBe("false");
    },
  );

  it.each([
    ["an upstream 5xx", "remote", { status: 503 }, 502, "upstream_http_error"],
    ["a reset connection", "remote", { fault: "reset" }, 502, "upstream_unreachable"],
    ["a refused connection", "down", {}, 502, "upstream_unreachable"],
    ["a timeout", "remote", { fault: "hang" }, 504, "upstream_timeout"],
  ])(
    "answers %s (backend %s, knobs %j) with %i %s and no x-should-retry, so SDKs retry",
    async (_what, model, knobs, status, code) => {
      const answer = await ask(gateway, model, knobs);
      expect(answer.status).toBe(status);
      expect(answer.body).toMatchObject({ error: { type: "upstream_error", code } });
      expect(answer.headers.get("x-should-retry")).toBeNull();
    },
  );

  it("keeps an upstream's own x-should-retry: an exhausted quota's 429 is not worth retrying", async () => {
    let calls = 0;
    const quota = createHttpServer((_req, res) => {
      calls++;
      res.writeHead(429, { "content-type": "application/json", "x-should-retry": "false" });
      res.end(
        JSON.stringify({
          error: {
            message: "You exceeded your current quota",
            type: "insufficient_quota",
            param: null,
            code: "insufficient_quota",
          },
        }),
      );
    });
    await new Promise<void>((resolve) => quota.listen(0, "127.0.0.1", resolve));
    try {
      const address = quota.address();
      const port = typeof address === "object" && address !== null ? address.port : 0;
      const withQuota = await gatewayWith(httpBackend("metered", ["retries: 2"], `http://127.0.0.1:${port}`));
      const answer = await ask(withQuota, "metered");
      expect(answer.status).toBe(429);
      expect(answer.headers.get("x-should-retry")).toBe("false");
      expect((answer.body.error as { message: string }).message).toContain("exceeded your current quota");
      // Nor did the gateway itself retry, though the backend has retries.
      expect(calls).toBe(1);
    } finally {
      await new Promise<void>((resolve) => {
        quota.close(() => resolve());
        quota.closeAllConnections();
      });
    }
  });

  it("says x-should-retry: false on the gateway's own 400s", async () => {
    const answer = await chat(gateway.url, { model: "local", messages: [] });
    expect(answer.status).toBe(400);
    expect(answer.headers.get("x-should-retry")).toBe("false");
  });
});

describe("timeouts", () => {
  let gateway: RunningGateway;
  beforeAll(async () => {
    gateway = await gatewayWith(
      httpBackend("brief", ["timeout: 0.3", "idle_timeout: 1", "circuit_breaker: false"]) +
        httpBackend("patient", ["timeout: 2", "idle_timeout: 0.3", "circuit_breaker: false"]),
    );
  });

  it("bounds the wait for a stream's first event by `timeout`: 504 before anything is sent", async () => {
    const started = performance.now();
    const { status, events } = await askStream(gateway, "brief", { fault: "hang" });
    expect(status).toBe(504);
    expect(events[0]).toMatchObject({ error: { code: "upstream_timeout" } });
    expect(performance.now() - started).toBeLessThan(1000);
  });

  it("lets a stream that keeps flowing run past `timeout`", async () => {
    // Six chunks 150 ms apart: about 0.75 s in all, more than the 0.3 s timeout, each gap well inside idle_timeout.
    const { status, events } = await askStream(gateway, "brief", { chunks: 6, chunk_delay_ms: 150 });
    expect(status).toBe(200);
    expect(events[events.length - 1]).toBe("[DONE]");
    expect(events.some((event) => typeof event === "object" && event !== null && "error" in event)).toBe(false);
  });

  it("cuts a stream that goes silent for longer than `idle_timeout`, in-band", async () => {
    const started = performance.now();
    const { status, events } = await askStream(gateway, "patient", { fault: "hang", after: 1 });
    expect(status).toBe(200);
    expect(events[events.length - 2]).toMatchObject({
      error: { code: "upstream_timeout", message: expect.stringContaining("0.3 s") },
    });
    expect(performance.now() - started).toBeLessThan(1500);
  });
});

describe("retries", () => {
  let gateway: RunningGateway;
  beforeAll(async () => {
    gateway = await gatewayWith(
      httpBackend("remote", ["timeout: 3", "retries: 2", "circuit_breaker: false"]) +
        httpBackend("once", ["timeout: 3", "circuit_breaker: false"]) +
        httpBackend("tight", ["timeout: 1", "retries: 5", "circuit_breaker: false"]),
    );
  });

  it.each([
    ["a reset connection", { fault: "reset" }],
    ["an upstream 502", { status: 502 }],
    ["an upstream 503", { status: 503 }],
    ["an upstream 504", { status: 504 }],
    ["an upstream 429", { status: 429 }],
  ])("retries %s and answers from the second call", async (_what, knobs) => {
    const answer = await ask(gateway, "remote", { ...knobs, times: 1 });
    expect(answer.status).toBe(200);
    expect(answer.body).toMatchObject({
      backend: "remote",
      choices: [{ message: { content: "Remote: Hello world" } }],
    });
    expect(answer.upstream).toHaveLength(2);
  });

  it.each([
    ["an upstream 500", { status: 500 }, 502],
    ["a malformed answer", { fault: "malformed" }, 502],
    ["an upstream 400", { status: 400 }, 400],
    ["an upstream 401", { status: 401 }, 502],
  ])("does not retry %s", async (_what, knobs, status) => {
    const answer = await ask(gateway, "remote", { ...knobs, times: 1 });
    expect(answer.status).toBe(status);
    expect(answer.upstream).toHaveLength(1);
  });

  it("does not retry without `retries` (the default is 0)", async () => {
    const answer = await ask(gateway, "once", { status: 503, times: 1 });
    expect(answer.status).toBe(502);
    expect(answer.upstream).toHaveLength(1);
  });

  it("gives up after `retries` more calls and answers with the failure", async () => {
    const answer = await ask(gateway, "remote", { status: 503 });
    expect(answer.status).toBe(502);
    expect(answer.upstream).toHaveLength(3);
  });

  it("counts retries per backend", async () => {
    const before = total(await scrape(gateway.url), "gateway_backend_retries_total", { backend: "remote" });
    await ask(gateway, "remote", { fault: "reset", times: 2 });
    expect(total(await scrape(gateway.url), "gateway_backend_retries_total", { backend: "remote" }) - before).toBe(2);
  });

  it("waits as long as the upstream's retry-after asks before retrying", async () => {
    const answer = await ask(gateway, "remote", { status: 429, retry_after: "1", times: 1 });
    expect(answer.status).toBe(200);
    expect(answer.upstream).toHaveLength(2);
    expect(answer.ms).toBeGreaterThanOrEqual(1000);
    expect(answer.ms).toBeLessThan(2500);
  });

  it("honours a retry-after given as an HTTP date", async () => {
    // HTTP dates have whole seconds: "2 s from now" is between 1 and 2 s away.
    const answer = await ask(gateway, "remote", {
      status: 503,
      retry_after: new Date(Date.now() + 2000).toUTCString(),
      times: 1,
    });
    expect(answer.status).toBe(200);
    expect(answer.ms).toBeGreaterThanOrEqual(900);
  });

  it("does not wait for a retry-after past the 10 s cap: the client gets the 429 and its retry-after at once", async () => {
    const answer = await ask(gateway, "remote", { status: 429, retry_after: "30", times: 1 });
    expect(answer.status).toBe(429);
    expect(answer.headers.get("retry-after")).toBe("30");
    expect(answer.upstream).toHaveLength(1);
    expect(answer.ms).toBeLessThan(1000);
  });

  it("bounds a backend's retries together by its timeout", async () => {
    // Each call takes 400 ms and answers 503; five retries would take 2.4 s, the timeout is 1 s.
    const answer = await ask(gateway, "tight", { status: 503, delay_ms: 400 });
    expect([502, 504]).toContain(answer.status);
    expect(answer.upstream.length).toBeLessThanOrEqual(3);
    expect(answer.ms).toBeLessThan(1500);
  });

  it("retries a stream that failed before its first event", async () => {
    const { status, events, requestId } = await askStream(gateway, "remote", { fault: "reset", times: 1 });
    expect(status).toBe(200);
    expect(events[events.length - 1]).toBe("[DONE]");
    expect(upstreamCalls(requestId)).toHaveLength(2);
  });

  it("never retries once a stream has started: the failure goes in-band", async () => {
    const { status, events, requestId } = await askStream(gateway, "remote", { fault: "reset", after: 1, times: 1 });
    expect(status).toBe(200);
    expect(events[events.length - 2]).toMatchObject({ error: { code: "upstream_stream_error" } });
    expect(upstreamCalls(requestId)).toHaveLength(1);
  });
});

describe("fallbacks", () => {
  let gateway: RunningGateway;
  beforeAll(async () => {
    gateway = await gatewayWith(
      httpBackend("primary", ["timeout: 0.5", "fallbacks: [backup]", "circuit_breaker: false"]) +
        httpBackend("backup", ["timeout: 2", "circuit_breaker: false"]) +
        httpBackend(
          "down",
          ["retries: 1", "fallbacks: [backup]", "circuit_breaker: false"],
          `http://127.0.0.1:${closedPort}`,
        ) +
        httpBackend("chain", ["timeout: 2", "fallbacks: [down, backup]", "circuit_breaker: false"]),
    );
  });

  it.each([
    ["a reset connection", { fault: "reset" }],
    ["an upstream 500", { status: 500 }],
    ["an upstream 503", { status: 503 }],
    ["an upstream 429", { status: 429 }],
    ["a malformed answer", { fault: "malformed" }],
    ["a timeout", { fault: "hang" }],
  ])("answers from the fallback after %s, and says so", async (_what, knobs) => {
    const answer = await ask(gateway, "primary", { ...knobs, times: 1 });
    expect(answer.status).toBe(200);
    expect(answer.body).toMatchObject({ model: "primary", backend: "backup" });
    expect(answer.headers.get("x-gateway-backend")).toBe("backup");
    expect(answer.upstream.map((call) => call.model)).toEqual(["primary-upstream", "backup-upstream"]);
  });

  it("falls back from a backend that is down, after its own retries", async () => {
    const before = total(await scrape(gateway.url), "gateway_fallbacks_total", { from: "down", to: "backup" });
    const answer = await ask(gateway, "down");
    expect(answer.status).toBe(200);
    expect(answer.body).toMatchObject({ backend: "backup" });
    expect(total(await scrape(gateway.url), "gateway_fallbacks_total", { from: "down", to: "backup" }) - before).toBe(
      1,
    );
    expect(
      total(await scrape(gateway.url), "gateway_backend_retries_total", { backend: "down" }),
    ).toBeGreaterThanOrEqual(1);
  });

  it("does not fall back when the upstream rejects the request itself", async () => {
    const answer = await ask(gateway, "primary", { status: 400, times: 1 });
    expect(answer.status).toBe(400);
    expect(answer.headers.get("x-gateway-backend")).toBe("primary");
    expect(answer.upstream).toHaveLength(1);
  });

  it("goes down the list in order, counting each step from the backend asked for", async () => {
    const before = await scrape(gateway.url);
    const answer = await ask(gateway, "chain", { status: 503, times: 1 });
    expect(answer.status).toBe(200);
    expect(answer.body).toMatchObject({ backend: "backup" });
    const after = await scrape(gateway.url);
    for (const to of ["down", "backup"]) {
      expect(
        total(after, "gateway_fallbacks_total", { from: "chain", to }) -
          total(before, "gateway_fallbacks_total", { from: "chain", to }),
      ).toBe(1);
    }
  });

  it("answers with the last backend's failure when every one fails", async () => {
    const answer = await ask(gateway, "primary", { status: 503 });
    expect(answer.status).toBe(502);
    expect((answer.body.error as { message: string }).message).toContain("Backend 'backup'");
    expect(answer.headers.get("x-gateway-backend")).toBe("backup");
  });

  it("counts the request under the backend that answered", async () => {
    const labels = { backend: "backup", code: "200", stream: "false" };
    const before = total(await scrape(gateway.url), "gateway_requests_total", labels);
    await ask(gateway, "primary", { status: 500, times: 1 });
    const after = await scrapeUntil(
      gateway.url,
      (samples) => total(samples, "gateway_requests_total", labels) > before,
    );
    expect(total(after, "gateway_requests_total", labels) - before).toBe(1);
  });

  it("falls back for a stream that failed before its first event; the chunks name the fallback", async () => {
    const { status, events } = await askStream(gateway, "primary", { fault: "reset", times: 1 });
    expect(status).toBe(200);
    const chunks = events.slice(0, -1) as { backend: string }[];
    expect(chunks.length).toBeGreaterThan(0);
    expect(chunks.every((chunk) => chunk.backend === "backup")).toBe(true);
  });

  it("does not fall back once a stream has started", async () => {
    const { events, requestId } = await askStream(gateway, "primary", { fault: "reset", after: 1, times: 1 });
    expect(events[events.length - 2]).toMatchObject({ error: { code: "upstream_stream_error" } });
    expect((events[0] as { backend: string }).backend).toBe("primary");
    expect(upstreamCalls(requestId)).toHaveLength(1);
  });
});

describe("circuit breaker", () => {
  const BREAKER = "circuit_breaker: {failures: 3, cooldown: 0.5}";

  async function tripped(extra: string[] = []): Promise<RunningGateway> {
    const gateway = await gatewayWith(httpBackend("remote", ["timeout: 2", BREAKER, ...extra]));
    for (let i = 0; i < 3; i++) expect((await ask(gateway, "remote", { status: 500 })).status).toBe(502);
    return gateway;
  }

  it("opens after consecutive failures: requests get a fast 503 with retry-after and never reach the upstream", async () => {
    const gateway = await tripped();
    const answer = await ask(gateway, "remote");
    expect(answer.status).toBe(503);
    expect(answer.headers.get("retry-after")).toBe("1");
    expect(answer.headers.get("x-gateway-backend")).toBe("remote");
    expect(answer.body).toEqual({
      error: {
        message: "Backend 'remote' failed repeatedly and is resting; try again in 1 s.",
        type: "upstream_error",
        param: null,
        code: "backend_unavailable",
      },
    });
    expect(answer.upstream).toHaveLength(0);
    expect(total(await scrape(gateway.url), "gateway_backend_up", { backend: "remote" })).toBe(0);
  });

  it("shows every backend up while its circuit is closed", async () => {
    const gateway = await gatewayWith(httpBackend("remote", [BREAKER]));
    const samples = await scrape(gateway.url);
    expect(total(samples, "gateway_backend_up", { backend: "remote" })).toBe(1);
    expect(total(samples, "gateway_backend_up", { backend: "local" })).toBe(1);
  });

  it("lets a trial request through after the cooldown, and closes when it succeeds", async () => {
    const gateway = await tripped();
    await sleep(550);
    const trial = await ask(gateway, "remote");
    expect(trial.status).toBe(200);
    expect(trial.upstream).toHaveLength(1);
    expect((await ask(gateway, "remote")).status).toBe(200);
    expect(total(await scrape(gateway.url), "gateway_backend_up", { backend: "remote" })).toBe(1);
  });

  it("opens again for another cooldown when the trial fails", async () => {
    const gateway = await tripped();
    await sleep(550);
    expect((await ask(gateway, "remote", { status: 500 })).status).toBe(502);
    const answer = await ask(gateway, "remote");
    expect(answer.status).toBe(503);
    expect(answer.upstream).toHaveLength(0);
  });

  it("lets only one trial through at a time", async () => {
    const gateway = await tripped();
    await sleep(550);
    const [trial, other] = await Promise.all([
      ask(gateway, "remote", { delay_ms: 300 }),
      sleep(50).then(() => ask(gateway, "remote")),
    ]);
    expect(trial.status).toBe(200);
    expect(other.status).toBe(503);
  });

  it("sends requests straight to the fallback while open", async () => {
    const gateway = await gatewayWith(httpBackend("remote", ["timeout: 2", BREAKER, "fallbacks: [local]"]));
    // The fallback answers the failing requests too; each of them still reached the upstream first.
    for (let i = 0; i < 3; i++) expect((await ask(gateway, "remote", { status: 500 })).upstream).toHaveLength(1);
    const answer = await ask(gateway, "remote", { status: 500 });
    expect(answer.status).toBe(200);
    expect(answer.body).toMatchObject({ backend: "local", choices: [{ message: { content: "Echo: Hello world" } }] });
    expect(answer.upstream).toHaveLength(0);
  });

  it("opens on timeouts too, so a hung upstream stops costing a timeout per request", async () => {
    const gateway = await gatewayWith(httpBackend("remote", ["timeout: 0.2", BREAKER]));
    for (let i = 0; i < 3; i++) expect((await ask(gateway, "remote", { fault: "hang" })).status).toBe(504);
    const answer = await ask(gateway, "remote", { fault: "hang" });
    expect(answer.status).toBe(503);
    expect(answer.upstream).toHaveLength(0);
  });

  it("is not opened by client errors", async () => {
    const gateway = await gatewayWith(httpBackend("remote", [BREAKER]));
    for (let i = 0; i < 5; i++) expect((await ask(gateway, "remote", { status: 400 })).status).toBe(400);
    expect((await ask(gateway, "remote")).status).toBe(200);
  });
});

describe("chained gateways: the hop counter", () => {
  it("forwards x-gateway-hops upstream as one more than it received", async () => {
    const gateway = await gatewayWith(httpBackend("remote"));
    expect((await ask(gateway, "remote")).upstream[0]?.hops).toBe("1");
    expect((await ask(gateway, "remote", {}, { "x-gateway-hops": "2" })).upstream[0]?.hops).toBe("3");
  });

  it("refuses a request that has passed through MAX_HOPS gateways with 508 and an OpenAI error", async () => {
    const gateway = await gatewayWith(httpBackend("remote"), { maxHops: 4 });
    expect((await ask(gateway, "remote", {}, { "x-gateway-hops": "3" })).status).toBe(200);
    const answer = await ask(gateway, "remote", {}, { "x-gateway-hops": "4" });
    expect(answer.status).toBe(508);
    expect(answer.body).toEqual({
      error: {
        message: expect.stringContaining("MAX_HOPS"),
        type: "invalid_request_error",
        param: null,
        code: "loop_detected",
      },
    });
    expect(answer.headers.get("x-should-retry")).toBe("false");
    expect(answer.upstream).toHaveLength(0);
  });

  it("refuses an x-gateway-hops that is not a whole number", async () => {
    const gateway = await gatewayWith(httpBackend("remote"));
    const answer = await ask(gateway, "remote", {}, { "x-gateway-hops": "many" });
    expect(answer.status).toBe(400);
    expect(answer.body).toMatchObject({ error: { code: "invalid_header" } });
  });

  it("ends a loop of two gateways pointing at each other with one 508, without retries or fallbacks multiplying it", async () => {
    const { front, back } = await startCycle();
    const started = performance.now();
    const client = new OpenAI({ baseURL: `${front.url}/v1`, apiKey: "unused", maxRetries: 2 });
    const error = await client.chat.completions
      .create({ model: "loop", messages: userMessage("Hello world") })
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(OpenAI.APIError);
    expect((error as InstanceType<typeof OpenAI.APIError>).status).toBe(508);
    expect(performance.now() - started).toBeLessThan(3000);
    // With MAX_HOPS 8, hops 0 to 8 arrive alternately at the two gateways and the ninth arrival is refused:
    // nine requests in all. More would mean the SDK retried (despite x-should-retry: false) or a gateway
    // retried or fell back on the 508.
    await sleep(50);
    const counted = [front, back].map(
      (gateway) => gateway.logLines().filter((line) => line.message === "request").length,
    );
    expect(counted).toEqual([5, 4]);
  });
});

const relays: Server[] = [];
afterAll(async () => {
  await Promise.all(relays.map((relay) => new Promise<void>((resolve) => relay.close(() => resolve()))));
});

/**
 * Two gateways whose `loop` backends (with retries and a fallback) point at each other. A gateway's port is
 * known only once it listens, so the back one reaches the front one through a small TCP relay started first.
 */
async function startCycle(): Promise<{ front: RunningGateway; back: RunningGateway }> {
  let frontPort = 0;
  const sockets = new Set<Socket>();
  const relay = createServer((socket) => {
    const upstream = connect(frontPort, "127.0.0.1");
    for (const end of [socket, upstream]) {
      sockets.add(end);
      end.on("close", () => sockets.delete(end));
    }
    socket.pipe(upstream).pipe(socket);
    socket.on("error", () => upstream.destroy());
    upstream.on("error", () => socket.destroy());
  });
  relay.on("close", () => sockets.forEach((socket) => socket.destroy()));
  relays.push(relay);
  const relayPort = await new Promise<number>((resolve) =>
    relay.listen(0, "127.0.0.1", () => {
      const address = relay.address();
      resolve(typeof address === "object" && address !== null ? address.port : 0);
    }),
  );
  const loop = (url: string) => httpBackend("loop", ["model: loop", "retries: 2", "fallbacks: [local]"], url);
  const back = await gatewayWith(loop(`http://127.0.0.1:${relayPort}`));
  const front = await gatewayWith(loop(back.url));
  frontPort = front.port;
  return { front, back };
}

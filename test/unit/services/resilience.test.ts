import { Registry } from "prom-client";
import type { StreamEvent } from "../../../gateway/src/backends/backend";
import {
  CircuitOpenError,
  ClientClosedError,
  InternalError,
  LoopDetectedError,
  UpstreamClientError,
  UpstreamHttpError,
  UpstreamInvalidResponseError,
  UpstreamStreamError,
  UpstreamTimeoutError,
  UpstreamUnreachableError,
} from "../../../gateway/src/errors";
import { createMetrics, type GatewayMetrics } from "../../../gateway/src/observability/metrics";
import type { ChatCompletionChunk } from "../../../gateway/src/schemas/chat";
import { InferenceService } from "../../../gateway/src/services/inference";
import {
  type BackoffOptions,
  DEFAULT_BACKOFF,
  judge,
  type ResilienceOptions,
  retryDelayMs,
} from "../../../gateway/src/services/resilience";
import { parseExposition, total } from "../../support/exposition";
import { singleTarget } from "../../../gateway/src/balancing/pool";
import { FakeBackend } from "../../support/fake-backend";

/** Answers each call with the next scripted outcome (the last one repeats), streaming `from {name}`. */
function scripted(name: string, outcomes: (Error | "ok")[], timeoutSeconds?: number): FakeBackend {
  return new FakeBackend(name, {
    outcomes,
    events: [{ delta: { content: `from ${name}` } }],
    ...(timeoutSeconds === undefined ? {} : { timeoutSeconds }),
  });
}

const FAST: BackoffOptions = { baseMs: 10, maxMs: 40, retryAfterCapMs: 500 };
const messages = [{ role: "user", content: "Hello world" }];

function policy(options: Partial<ResilienceOptions>): ResilienceOptions {
  return { retries: 0, fallbacks: [], circuitBreaker: undefined, ...options };
}

let metrics: GatewayMetrics;
beforeEach(() => {
  metrics = createMetrics(new Registry(), ["a", "b", "c"], new Map([["a", ["b", "c"]]]));
});

function service(
  backends: FakeBackend[],
  policies: Record<string, Partial<ResilienceOptions>>,
  now?: () => number,
): InferenceService {
  const first = backends[0];
  if (first === undefined) throw new Error("no backends");
  const map = new Map(Object.entries(policies).map(([name, options]) => [name, policy(options)]));
  // Breakers belong to a backend's targets: each backend gets one target with its policy's breaker.
  for (const backend of backends) backend.pool = singleTarget(map.get(backend.name)?.circuitBreaker, now);
  return new InferenceService(backends, first, metrics, {
    policies: map,
    backoff: FAST,
    random: () => 0.5,
  });
}

function options(extra: { signal?: AbortSignal; onBackend?: (name: string) => void } = {}) {
  return {
    requestId: "r",
    signal: extra.signal ?? new AbortController().signal,
    startedAt: performance.now(),
    ...(extra.onBackend ? { onBackend: extra.onBackend } : {}),
  };
}

async function metric(name: string, labels: Record<string, string>): Promise<number> {
  return total(parseExposition(await metrics.registry.metrics()), name, labels);
}

const refused = () => new UpstreamUnreachableError("x", "ECONNREFUSED");

describe("judge: what a failure before the first byte leads to", () => {
  it.each([
    ["a connection error", refused(), { retry: true, fallBack: true, health: "failure" }],
    [
      "an upstream 502",
      new UpstreamHttpError("x", 502, "bad gateway"),
      { retry: true, fallBack: true, health: "failure" },
    ],
    ["an upstream 503", new UpstreamHttpError("x", 503, "busy"), { retry: true, fallBack: true, health: "failure" }],
    ["an upstream 504", new UpstreamHttpError("x", 504, "slow"), { retry: true, fallBack: true, health: "failure" }],
    ["an upstream 500", new UpstreamHttpError("x", 500, "bug"), { retry: false, fallBack: true, health: "failure" }],
    [
      "an upstream 401 (our key)",
      new UpstreamHttpError("x", 401, "bad key"),
      { retry: false, fallBack: true, health: "failure" },
    ],
    [
      "an upstream 429",
      new UpstreamClientError("x", 429, "slow down"),
      { retry: true, fallBack: true, health: "neutral" },
    ],
    [
      "an upstream 429 saying x-should-retry: false",
      new UpstreamClientError("x", 429, "quota", { "x-should-retry": "false" }),
      { retry: false, fallBack: true, health: "neutral" },
    ],
    ["an upstream 400", new UpstreamClientError("x", 400, "bad"), { retry: false, fallBack: false, health: "success" }],
    ["an upstream 413", new UpstreamClientError("x", 413, "big"), { retry: false, fallBack: false, health: "success" }],
    ["our own timeout", new UpstreamTimeoutError("x", 1), { retry: false, fallBack: true, health: "failure" }],
    [
      "an invalid answer",
      new UpstreamInvalidResponseError("x", "not JSON"),
      { retry: false, fallBack: true, health: "failure" },
    ],
    [
      "a stream that broke before its first event",
      new UpstreamStreamError("x", "cut"),
      { retry: false, fallBack: true, health: "failure" },
    ],
    ["an open circuit", new CircuitOpenError("x", 3), { retry: false, fallBack: true, health: "neutral" }],
    ["a client that left", new ClientClosedError(), { retry: false, fallBack: false, health: "neutral" }],
    ["a gateway loop", new LoopDetectedError("loop"), { retry: false, fallBack: false, health: "neutral" }],
    ["a gateway bug", new InternalError(), { retry: false, fallBack: false, health: "neutral" }],
    ["a plain Error", new Error("bug"), { retry: false, fallBack: false, health: "neutral" }],
  ])("%s", (_what, error, verdict) => {
    expect(judge(error)).toEqual(verdict);
  });
});

describe("retryDelayMs", () => {
  it("backs off exponentially up to the maximum, with half of each step random", () => {
    const backoff = { baseMs: 200, maxMs: 2000, retryAfterCapMs: 10_000 };
    expect([0, 1, 2, 3, 4, 5].map((retry) => retryDelayMs(refused(), retry, backoff, () => 0))).toEqual([
      100, 200, 400, 800, 1000, 1000,
    ]);
    expect([0, 1, 2, 3, 4, 5].map((retry) => retryDelayMs(refused(), retry, backoff, () => 1))).toEqual([
      200, 400, 800, 1600, 2000, 2000,
    ]);
  });

  it("waits what the upstream's retry-after asked instead", () => {
    expect(retryDelayMs(new UpstreamClientError("x", 429, "slow", {}, 3000), 0, DEFAULT_BACKOFF, () => 0)).toBe(3000);
    expect(retryDelayMs(new UpstreamHttpError("x", 503, "busy", 0), 2, DEFAULT_BACKOFF, () => 0)).toBe(0);
  });

  it("does not retry at all when retry-after is longer than the cap", () => {
    expect(
      retryDelayMs(new UpstreamClientError("x", 429, "slow", {}, 10_001), 0, DEFAULT_BACKOFF, () => 0),
    ).toBeUndefined();
  });
});

describe("retries", () => {
  it("calls the backend again after a retryable failure and answers from it", async () => {
    const a = scripted("a", [refused(), new UpstreamHttpError("a", 503, "busy"), "ok"]);
    const completion = await service([a], { a: { retries: 2 } }).complete(a, { messages }, options());
    expect(completion.backend).toBe("a");
    expect(a.calls).toHaveLength(3);
    expect(await metric("gateway_backend_retries_total", { backend: "a" })).toBe(2);
    expect(await metric("gateway_backend_errors_total", { backend: "a" })).toBe(2);
  });

  it("waits with exponential backoff between calls", async () => {
    const a = scripted("a", [refused(), refused(), "ok"]);
    await service([a], { a: { retries: 2 } }).complete(a, { messages }, options());
    const gaps = a.calls.slice(1).map((call, index) => call.at - (a.calls[index]?.at ?? 0));
    // random 0.5 -> three quarters of each step: 7.5 ms, then 15 ms. Timers run on libuv's cached,
    // whole-millisecond loop clock, so against performance.now() one can fire up to ~1.5 ms early (seen: 6.4).
    expect(gaps[0]).toBeGreaterThanOrEqual(5.5);
    expect(gaps[1]).toBeGreaterThanOrEqual(13);
  });

  it("gives up after `retries` more calls and reports the last failure", async () => {
    const a = scripted("a", [refused()]);
    await expect(service([a], { a: { retries: 2 } }).complete(a, { messages }, options())).rejects.toBeInstanceOf(
      UpstreamUnreachableError,
    );
    expect(a.calls).toHaveLength(3);
  });

  it("does not retry without retries configured", async () => {
    const a = scripted("a", [refused(), "ok"]);
    await expect(service([a], {}).complete(a, { messages }, options())).rejects.toBeInstanceOf(
      UpstreamUnreachableError,
    );
    expect(a.calls).toHaveLength(1);
  });

  it.each([
    ["an upstream 500", new UpstreamHttpError("a", 500, "bug")],
    ["an upstream 400", new UpstreamClientError("a", 400, "bad")],
    ["a timeout", new UpstreamTimeoutError("a", 1)],
    ["an invalid answer", new UpstreamInvalidResponseError("a", "x")],
  ])("does not retry %s", async (_what, error) => {
    const a = scripted("a", [error, "ok"]);
    await expect(service([a], { a: { retries: 3 } }).complete(a, { messages }, options())).rejects.toBe(error);
    expect(a.calls).toHaveLength(1);
  });

  it("honours the upstream's retry-after", async () => {
    const a = scripted("a", [new UpstreamClientError("a", 429, "slow", {}, 120), "ok"]);
    await service([a], { a: { retries: 1 } }).complete(a, { messages }, options());
    // 118, not 120: timers can fire up to ~1.5 ms early against performance.now() (whole-ms loop clock).
    expect((a.calls[1]?.at ?? 0) - (a.calls[0]?.at ?? 0)).toBeGreaterThanOrEqual(118);
  });

  it("passes a 429 on instead of retrying when its retry-after is past the cap", async () => {
    const limited = new UpstreamClientError("a", 429, "slow", { "retry-after": "30" }, 30_000);
    const a = scripted("a", [limited, "ok"]);
    await expect(service([a], { a: { retries: 1 } }).complete(a, { messages }, options())).rejects.toBe(limited);
    expect(a.calls).toHaveLength(1);
  });

  it("gives every call of one request the same deadline: the backend's timeout from the first call", async () => {
    const a = scripted("a", [refused(), "ok"], 5);
    const before = performance.now();
    await service([a], { a: { retries: 1 } }).complete(a, { messages }, options());
    const [first, second] = a.calls.map((call) => call.call.deadline);
    expect(first).toBe(second);
    expect(first).toBeGreaterThanOrEqual(before + 5000);
    expect(first).toBeLessThan(before + 5100);
  });

  it("does not schedule a retry past the deadline", async () => {
    const a = scripted("a", [new UpstreamClientError("a", 429, "slow", {}, 400), "ok"], 0.2);
    await expect(service([a], { a: { retries: 1 } }).complete(a, { messages }, options())).rejects.toBeInstanceOf(
      UpstreamClientError,
    );
    expect(a.calls).toHaveLength(1);
  });

  it("stops waiting, and does not call again, when the client leaves during the backoff", async () => {
    const controller = new AbortController();
    const a = scripted("a", [new UpstreamClientError("a", 429, "slow", {}, 300), "ok"]);
    const pending = service([a], { a: { retries: 1 } }).complete(
      a,
      { messages },
      options({ signal: controller.signal }),
    );
    setTimeout(() => controller.abort(), 20);
    const started = performance.now();
    await expect(pending).rejects.toBeInstanceOf(ClientClosedError);
    expect(performance.now() - started).toBeLessThan(250);
    expect(a.calls).toHaveLength(1);
  });
});

describe("fallbacks", () => {
  it("answers from the next backend when the first fails, and says which answered", async () => {
    const a = scripted("a", [refused()]);
    const b = scripted("b", ["ok"]);
    const named: string[] = [];
    const completion = await service([a, b], { a: { fallbacks: ["b"] } }).complete(
      a,
      { model: "a", messages },
      options({ onBackend: (name) => named.push(name) }),
    );
    expect(completion).toMatchObject({ backend: "b", model: "a", choices: [{ message: { content: "from b" } }] });
    expect(named).toEqual(["a", "b"]);
    expect(await metric("gateway_fallbacks_total", { from: "a", to: "b" })).toBe(1);
  });

  it("uses up the first backend's retries before falling back", async () => {
    const a = scripted("a", [refused()]);
    const b = scripted("b", ["ok"]);
    await service([a, b], { a: { retries: 2, fallbacks: ["b"] } }).complete(a, { messages }, options());
    expect(a.calls).toHaveLength(3);
    expect(b.calls).toHaveLength(1);
  });

  it("goes down the list in order and reports the last failure when every backend fails", async () => {
    const a = scripted("a", [refused()]);
    const b = scripted("b", [new UpstreamTimeoutError("b", 1)]);
    const last = new UpstreamHttpError("c", 500, "bug");
    const c = scripted("c", [last]);
    await expect(
      service([a, b, c], { a: { fallbacks: ["b", "c"] } }).complete(a, { messages }, options()),
    ).rejects.toBe(last);
    expect([a.calls.length, b.calls.length, c.calls.length]).toEqual([1, 1, 1]);
    expect(await metric("gateway_fallbacks_total", { from: "a", to: "b" })).toBe(1);
    expect(await metric("gateway_fallbacks_total", { from: "a", to: "c" })).toBe(1);
  });

  it("follows only the routed backend's list, never a fallback's own", async () => {
    const a = scripted("a", [refused()]);
    const b = scripted("b", [refused()]);
    const c = scripted("c", ["ok"]);
    await expect(
      service([a, b, c], { a: { fallbacks: ["b"] }, b: { fallbacks: ["a", "c"] } }).complete(
        a,
        { messages },
        options(),
      ),
    ).rejects.toBeInstanceOf(UpstreamUnreachableError);
    expect([a.calls.length, b.calls.length, c.calls.length]).toEqual([1, 1, 0]);
  });

  it("does not fall back on a client error: the request itself is wrong", async () => {
    const a = scripted("a", [new UpstreamClientError("a", 400, "bad")]);
    const b = scripted("b", ["ok"]);
    await expect(
      service([a, b], { a: { fallbacks: ["b"] } }).complete(a, { messages }, options()),
    ).rejects.toBeInstanceOf(UpstreamClientError);
    expect(b.calls).toHaveLength(0);
  });

  it("falls back on a rate limit", async () => {
    const a = scripted("a", [new UpstreamClientError("a", 429, "slow", {}, 30_000)]);
    const b = scripted("b", ["ok"]);
    expect((await service([a, b], { a: { fallbacks: ["b"] } }).complete(a, { messages }, options())).backend).toBe("b");
  });

  it("falls back for streams before the first event, and the chunks name the backend that answered", async () => {
    const a = scripted("a", [refused()]);
    const b = scripted("b", ["ok"]);
    const chunks: ChatCompletionChunk[] = [];
    for await (const chunk of await service([a, b], { a: { fallbacks: ["b"] } }).openStream(
      a,
      { model: "a", messages },
      options(),
    ))
      chunks.push(chunk);
    expect(chunks.every((chunk) => chunk.backend === "b" && chunk.model === "a")).toBe(true);
    expect(chunks[0]?.choices[0]?.delta).toEqual({ role: "assistant", content: "from b" });
  });
});

describe("circuit breaker", () => {
  const breaker = { failures: 2, cooldownSeconds: 0.2 };

  it("refuses at once with 503 and retry-after once the backend failed enough times in a row", async () => {
    const a = scripted("a", [refused()]);
    const subject = service([a], { a: { circuitBreaker: breaker } });
    for (let i = 0; i < 2; i++)
      await expect(subject.complete(a, { messages }, options())).rejects.toBeInstanceOf(UpstreamUnreachableError);
    const refusal = await subject.complete(a, { messages }, options()).catch((error: unknown) => error);
    expect(refusal).toBeInstanceOf(CircuitOpenError);
    expect((refusal as CircuitOpenError).status).toBe(503);
    expect((refusal as CircuitOpenError).headers).toEqual({ "retry-after": "1" });
    expect(a.calls).toHaveLength(2);
    expect(await metric("gateway_backend_up", { backend: "a" })).toBe(0);
  });

  it("sends requests straight to the fallback while open", async () => {
    const a = scripted("a", [refused()]);
    const b = scripted("b", ["ok"]);
    const subject = service([a, b], { a: { circuitBreaker: breaker, fallbacks: ["b"] } });
    for (let i = 0; i < 3; i++) expect((await subject.complete(a, { messages }, options())).backend).toBe("b");
    expect(a.calls).toHaveLength(2);
    expect(b.calls).toHaveLength(3);
  });

  it("stops retrying once its own retries opened the circuit", async () => {
    const a = scripted("a", [refused()]);
    await expect(
      service([a], { a: { retries: 5, circuitBreaker: breaker } }).complete(a, { messages }, options()),
    ).rejects.toBeInstanceOf(CircuitOpenError);
    expect(a.calls).toHaveLength(2);
  });

  it("closes again after the cooldown when the trial call succeeds", async () => {
    const a = scripted("a", [refused(), refused(), "ok"]);
    let skipped = 0;
    const subject = service([a], { a: { circuitBreaker: breaker } }, () => performance.now() + skipped);
    for (let i = 0; i < 2; i++) await subject.complete(a, { messages }, options()).catch(() => undefined);
    await expect(subject.complete(a, { messages }, options())).rejects.toBeInstanceOf(CircuitOpenError);
    // The breakers' clock moves past the 0.2 s cooldown instead of the test sleeping.
    skipped = 220;
    expect((await subject.complete(a, { messages }, options())).backend).toBe("a");
    expect(await metric("gateway_backend_up", { backend: "a" })).toBe(1);
  });

  it("counts a stream that breaks after its first event as a failure", async () => {
    class Breaking extends FakeBackend {
      override async *stream(): AsyncGenerator<StreamEvent> {
        yield { delta: { content: "x" } };
        throw new UpstreamStreamError("a", "cut");
      }
    }
    const a = new Breaking("a");
    const subject = service([a], { a: { circuitBreaker: breaker } });
    for (let i = 0; i < 2; i++) {
      const stream = await subject.openStream(a, { messages }, options());
      await expect(
        (async () => {
          for await (const _chunk of stream);
        })(),
      ).rejects.toBeInstanceOf(UpstreamStreamError);
    }
    await expect(subject.openStream(a, { messages }, options())).rejects.toBeInstanceOf(CircuitOpenError);
  });
});

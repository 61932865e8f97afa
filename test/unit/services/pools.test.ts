import { Registry } from "prom-client";
import { type Balance, TargetPool } from "../../../gateway/src/balancing/pool";
import { Target } from "../../../gateway/src/balancing/target";
import {
  CircuitOpenError,
  UpstreamClientError,
  UpstreamHttpError,
  UpstreamTimeoutError,
  UpstreamUnreachableError,
} from "../../../gateway/src/errors";
import { createMetrics, type GatewayMetrics } from "../../../gateway/src/observability/metrics";
import { InferenceService } from "../../../gateway/src/services/inference";
import type { ResilienceOptions } from "../../../gateway/src/services/resilience";
import { parseExposition, total } from "../../support/exposition";
import { FakeBackend } from "../../support/fake-backend";

const messages = [{ role: "user", content: "Hello world" }];
const refused = () => new UpstreamUnreachableError("a", "ECONNREFUSED");

/** A fake backend with `names.length` targets, balanced round robin so the first call goes to the first one. */
function pooled(name: string, names: readonly string[], balance: Balance = "round_robin"): FakeBackend {
  const backend = new FakeBackend(name, { events: [{ delta: { content: `from ${name}` } }] });
  const pool = new TargetPool({ balance });
  pool.set(
    names.map((target) => new Target({ name: target, weight: 1, breaker: { failures: 2, cooldownSeconds: 30 } })),
  );
  backend.pool = pool;
  return backend;
}

let metrics: GatewayMetrics;
beforeEach(() => {
  metrics = createMetrics(new Registry(), ["a", "b"]);
});

function service(backends: FakeBackend[], policies: Record<string, Partial<ResilienceOptions>> = {}) {
  const first = backends[0];
  if (first === undefined) throw new Error("no backends");
  const map = new Map(
    Object.entries(policies).map(([name, options]) => [
      name,
      { retries: 0, fallbacks: [], circuitBreaker: undefined, ...options },
    ]),
  );
  return new InferenceService(backends, first, metrics, {
    policies: map,
    backoff: { baseMs: 5, maxMs: 10, retryAfterCapMs: 100 },
    random: () => 0.5,
  });
}

function options(seen: string[] = [], signal = new AbortController().signal) {
  return {
    requestId: "r",
    signal,
    startedAt: performance.now(),
    onTarget: (name: string) => seen.push(name),
  };
}

const targetsCalled = (backend: FakeBackend) => backend.calls.map(({ call }) => call.target?.name);
const inFlight = (backend: FakeBackend) => backend.pool.targets.map((target) => target.inFlight);

describe("a backend with several targets", () => {
  it("sends a call that failed before its first byte to another target at once, without retries configured", async () => {
    const a = pooled("a", ["t0", "t1", "t2"]);
    a.targetFailures.set("t0", refused());
    const seen: string[] = [];
    const answer = await service([a]).complete(a, { messages }, options(seen));
    expect(answer.backend).toBe("a");
    expect(targetsCalled(a)).toEqual(["t0", "t1"]);
    expect(seen).toEqual(["t0", "t1"]);
    expect(inFlight(a)).toEqual([0, 0, 0]);
    const samples = parseExposition(await metrics.registry.metrics());
    expect(total(samples, "gateway_target_requests_total", { backend: "a", target: "t0", code: "502" })).toBe(1);
    expect(total(samples, "gateway_target_requests_total", { backend: "a", target: "t1", code: "200" })).toBe(1);
    // Another target is not a retry.
    expect(total(samples, "gateway_backend_retries_total", { backend: "a" })).toBe(0);
  });

  it("counts the upstream's own status per target", async () => {
    const a = pooled("a", ["t0", "t1"]);
    a.targetFailures.set("t0", new UpstreamHttpError("a", 503, "overloaded"));
    a.targetFailures.set("t1", new UpstreamHttpError("a", 500, "bug"));
    await expect(service([a]).complete(a, { messages }, options())).rejects.toBeInstanceOf(UpstreamHttpError);
    const samples = parseExposition(await metrics.registry.metrics());
    expect(total(samples, "gateway_target_requests_total", { backend: "a", target: "t0", code: "503" })).toBe(1);
    expect(total(samples, "gateway_target_requests_total", { backend: "a", target: "t1", code: "500" })).toBe(1);
  });

  it("tries every target once, then retries, then falls back to another backend", async () => {
    const a = pooled("a", ["t0", "t1"]);
    const b = pooled("b", ["u0"]);
    for (const target of ["t0", "t1"]) a.targetFailures.set(target, new UpstreamHttpError("a", 502, "bad gateway"));
    const answer = await service([a, b], { a: { retries: 1, fallbacks: ["b"] } }).complete(a, { messages }, options());
    expect(answer.backend).toBe("b");
    expect(targetsCalled(a)).toHaveLength(3);
    expect(targetsCalled(a).slice(0, 2).sort()).toEqual(["t0", "t1"]);
    expect(targetsCalled(b)).toEqual(["u0"]);
  });

  it("does not move a client's mistake (a 400) to another target", async () => {
    const a = pooled("a", ["t0", "t1"]);
    a.targetFailures.set("t0", new UpstreamClientError("a", 400, "bad request", {}));
    await expect(service([a]).complete(a, { messages }, options())).rejects.toBeInstanceOf(UpstreamClientError);
    expect(targetsCalled(a)).toEqual(["t0"]);
  });

  it("does not try another target once the backend's timeout is spent", async () => {
    const a = pooled("a", ["t0", "t1"]);
    a.targetFailures.set("t0", new UpstreamTimeoutError("a", 0.001));
    // The fake's timeout is 1 ms: gone by the time the failure is judged.
    Object.assign(a, { timeoutSeconds: 0.001 });
    a.holdCalls = true;
    const pending = service([a]).complete(a, { messages }, options());
    await new Promise((resolve) => setTimeout(resolve, 10));
    a.release?.();
    await expect(pending).rejects.toBeInstanceOf(UpstreamTimeoutError);
    expect(targetsCalled(a)).toEqual(["t0"]);
  });

  it("ejects a failing target by its own breaker and keeps the backend serving from the others", async () => {
    const a = pooled("a", ["t0", "t1"]);
    a.targetFailures.set("t0", refused());
    const subject = service([a]);
    for (let i = 0; i < 10; i++) await subject.complete(a, { messages }, options());
    // Two failures (the breaker's threshold) and t0 is out: every later call goes straight to t1.
    expect(targetsCalled(a).filter((name) => name === "t0")).toHaveLength(2);
    expect(targetsCalled(a).filter((name) => name === "t1")).toHaveLength(10);
    const [t0, t1] = a.pool.targets;
    expect([t0?.up, t1?.up]).toEqual([false, true]);
    const samples = parseExposition(await metrics.registry.metrics());
    expect(total(samples, "gateway_target_up", { backend: "a", target: "t0" })).toBe(0);
    expect(total(samples, "gateway_backend_up", { backend: "a" })).toBe(1);
  });

  it("answers 503 backend_unavailable with retry-after when every target is out, or goes to the fallback", async () => {
    const a = pooled("a", ["t0", "t1"]);
    const b = pooled("b", ["u0"]);
    for (const target of a.pool.targets) target.checkedUp = false;
    const refusal = await service([a])
      .complete(a, { messages }, options())
      .catch((error: unknown) => error);
    expect(refusal).toBeInstanceOf(CircuitOpenError);
    expect((refusal as CircuitOpenError).code).toBe("backend_unavailable");
    expect((refusal as CircuitOpenError).headers["retry-after"]).toBe("1");
    // Out by their health checks, not their breakers: the message says so.
    expect((refusal as CircuitOpenError).message).toBe(
      "Backend 'a' has no target in rotation (failing health checks, or a name that does not resolve yet); try again in 1 s.",
    );
    expect(a.calls).toHaveLength(0);
    const answer = await service([a, b], { a: { fallbacks: ["b"] } }).complete(a, { messages }, options());
    expect(answer.backend).toBe("b");
  });

  it("holds a stream's target in flight until the stream is over, however it ends", async () => {
    const a = pooled("a", ["t0"], "least_outstanding");
    const subject = service([a]);
    const finished = await subject.openStream(a, { messages }, options());
    expect(inFlight(a)).toEqual([1]);
    for await (const _chunk of finished) void _chunk;
    expect(inFlight(a)).toEqual([0]);

    const left = await subject.openStream(a, { messages }, options());
    expect(inFlight(a)).toEqual([1]);
    left.close();
    left.close();
    expect(inFlight(a)).toEqual([0]);
  });

  it("sends a session to one target with affinity, and elsewhere only while that target is out", async () => {
    const a = new FakeBackend("a");
    const pool = new TargetPool({ balance: "least_outstanding", affinity: { header: "x-session-id" } });
    pool.set(["t0", "t1", "t2"].map((name) => new Target({ name, weight: 1, breaker: undefined })));
    a.pool = pool;
    const subject = service([a]);
    const call = (session: string) =>
      subject.complete(
        a,
        { messages },
        { ...options(), header: (name: string) => (name === "x-session-id" ? session : undefined) },
      );
    for (let i = 0; i < 20; i++) await call("alice");
    const home = targetsCalled(a)[0];
    expect(new Set(targetsCalled(a))).toEqual(new Set([home]));
    const homeTarget = pool.targets.find((target) => target.name === home);
    if (homeTarget === undefined) throw new Error("setup");
    homeTarget.checkedUp = false;
    await call("alice");
    expect(targetsCalled(a).at(-1)).not.toBe(home);
    homeTarget.checkedUp = true;
    await call("alice");
    expect(targetsCalled(a).at(-1)).toBe(home);
  });
});

import { Registry } from "prom-client";
import { PassThrough } from "node:stream";
import { HttpBackend } from "../../gateway/src/backends/http/backend";
import { httpBackendFactory } from "../../gateway/src/backends/http/factory";
import { Upstreams } from "../../gateway/src/backends/http/upstreams";
import { ResponseBudget } from "../../gateway/src/backends/response-budget";
import { ConfigFields } from "../../gateway/src/config/fields";
import { createLogger } from "../../gateway/src/observability/logger";
import { createMetrics } from "../../gateway/src/observability/metrics";
import { InferenceService } from "../../gateway/src/services/inference";
import { eventually } from "../support/eventually";
import { parseExposition } from "../support/exposition";
import { type RunningMock, setMockHealth, startMock } from "../support/servers";

/**
 * `discovery: dns` against real servers: three mock-remotes on 127.0.0.1-3 at one port stand for the
 * replicas a name resolves to. Only the resolver is the test's (the gateway's own uses the system's, which
 * a test cannot point at loopback addresses); connections, pools and draining are the real ones.
 */

const HOST = "models.internal";

describe("discovery: dns", () => {
  let mocks: RunningMock[] = [];
  let backend: HttpBackend | undefined;

  afterEach(async () => {
    await backend?.close();
    backend = undefined;
    await Promise.all(mocks.map((mock) => mock.close()));
    mocks = [];
  });

  async function setup(addresses: { current: readonly string[] | Error }, extra: Record<string, unknown> = {}) {
    const first = await startMock({ instance: "r1", host: "127.0.0.1" });
    const port = first.port;
    mocks = [
      first,
      await startMock({ instance: "r2", host: "127.0.0.2", port }),
      await startMock({ instance: "r3", host: "127.0.0.3", port }),
      await startMock({ instance: "r4", host: "127.0.0.4", port }),
    ];
    const options = httpBackendFactory.parseOptions(
      ConfigFields.from(
        { url: `http://${HOST}:${port}/v1`, discovery: "dns", dns_refresh: 3600, balance: "round_robin", ...extra },
        "backends[0]",
      ),
      {},
    );
    const stream = new PassThrough();
    let text = "";
    stream.on("data", (chunk: Buffer) => (text += chunk.toString("utf8")));
    const context = {
      env: {},
      logger: createLogger({ level: "info", service: "gateway", stream }),
      responseBudget: new ResponseBudget(1024 * 1024),
    };
    const lookups: string[] = [];
    const upstreams = new Upstreams("pool", options, context, async (host) => {
      lookups.push(host);
      if (addresses.current instanceof Error) throw addresses.current;
      return addresses.current;
    });
    backend = new HttpBackend("pool", options, context, upstreams);
    const metrics = createMetrics(new Registry(), ["pool"]);
    const service = new InferenceService([backend], backend, metrics);
    const running = backend;
    const ask = (delayMs = 0) =>
      service.complete(
        running,
        { messages: [{ role: "user", content: "hi" }], ...(delayMs > 0 ? { mock: { delay_ms: delayMs } } : {}) },
        { requestId: "r", signal: new AbortController().signal, startedAt: performance.now() },
      );
    const chatCalls = (mock: RunningMock) => mock.seen.filter((seen) => seen.path === "/v1/chat/completions");
    const targetsCounted = async () =>
      [
        ...new Set(
          parseExposition(await metrics.registry.metrics())
            .filter((sample) => sample.name === "gateway_target_requests_total")
            .map((sample) => String(sample.labels.target)),
        ),
      ].sort();
    return { port, upstreams, ask, lookups, chatCalls, log: () => text, running, targetsCounted };
  }

  it("makes one target per address, sends the configured host, and follows the name as its addresses change", async () => {
    const addresses: { current: readonly string[] | Error } = { current: ["127.0.0.1", "127.0.0.2", "127.0.0.3"] };
    const { port, upstreams, ask, lookups, chatCalls, log, running, targetsCounted } = await setup(addresses);
    await upstreams.refresh();
    expect(lookups).toContain(HOST);
    expect(running.pool.targets.map((target) => target.name)).toEqual([
      `127.0.0.1:${port}`,
      `127.0.0.2:${port}`,
      `127.0.0.3:${port}`,
    ]);
    for (let i = 0; i < 30; i++) await ask();
    const [r1, r2, r3, r4] = mocks;
    if (r1 === undefined || r2 === undefined || r3 === undefined || r4 === undefined) throw new Error("setup");
    for (const replica of [r1, r2, r3]) {
      expect(chatCalls(replica).length).toBeGreaterThan(0);
      expect(chatCalls(replica)[0]?.headers.host).toBe(`${HOST}:${port}`);
    }

    // r3 vanishes from the name while three slow answers are under way, one on each replica: it takes no
    // new request, and the one it has finishes (its pool drains before it closes).
    const slow = Promise.all([ask(300), ask(300), ask(300)]);
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(running.pool.targets.map((target) => target.inFlight)).toEqual([1, 1, 1]);
    addresses.current = ["127.0.0.1", "127.0.0.2", "127.0.0.4"];
    await upstreams.refresh();
    expect(running.pool.targets.map((target) => target.name)).toEqual([
      `127.0.0.1:${port}`,
      `127.0.0.2:${port}`,
      `127.0.0.4:${port}`,
    ]);
    const answers = await slow;
    expect(answers).toHaveLength(3);
    // Drained, r3's counts leave /metrics (so do those of the name itself, the target before the first lookup).
    const counted = [`127.0.0.1:${port}`, `127.0.0.2:${port}`, `127.0.0.4:${port}`];
    await eventually("r3's series gone", targetsCounted, (names) => names.join() === counted.join());
    const r3Calls = chatCalls(r3).length;
    for (let i = 0; i < 30; i++) await ask();
    expect(chatCalls(r3)).toHaveLength(r3Calls);
    expect(chatCalls(r4).length).toBeGreaterThan(0);
    expect(log()).toContain('"message":"targets changed"');

    // A failed lookup keeps the targets found before, and is told once.
    addresses.current = new Error("getaddrinfo EAI_AGAIN models.internal");
    await upstreams.refresh();
    await upstreams.refresh();
    expect(running.pool.targets).toHaveLength(3);
    expect(log().split("target host did not resolve").length - 1).toBe(1);
    await ask();
  });

  it("retries a lookup that failed within seconds, not after dns_refresh: a name that resolves late is found", async () => {
    // As a stack starts: the gateway is up before its upstream's first task is in DNS.
    const addresses: { current: readonly string[] | Error } = {
      current: new Error("getaddrinfo ENOTFOUND models.internal"),
    };
    const { port, ask, lookups, running } = await setup(addresses);
    // dns_refresh is an hour (setup): only the quicker retry after a failure can make a second lookup.
    await eventually(
      "a second lookup",
      async () => lookups.length,
      (count) => count >= 2,
      { timeoutMs: 10_000 },
    );
    addresses.current = ["127.0.0.1", "127.0.0.2"];
    await eventually(
      "the name's addresses as the targets",
      async () => running.pool.targets.map((target) => target.name).join(),
      (names) => names === `127.0.0.1:${port},127.0.0.2:${port}`,
      { timeoutMs: 10_000 },
    );
    expect((await ask()).choices).toHaveLength(1);
  });

  it("with health checks, a replica that joins a serving pool takes requests only once its first check passes", async () => {
    const addresses: { current: readonly string[] | Error } = { current: ["127.0.0.1", "127.0.0.2"] };
    const health = { path: "/health", interval: 0.2, timeout: 0.1 };
    const { port, upstreams, ask, chatCalls, running } = await setup(addresses, { health_check: health });
    await upstreams.refresh();
    // The pool's first targets serve at once, before any check.
    expect(running.pool.targets.map((target) => target.checkedUp)).toEqual([true, true]);
    const r3 = mocks[2];
    if (r3 === undefined) throw new Error("setup");
    // r3 is in DNS but not ready yet (its /health fails), as a restarted container is before it listens.
    await setMockHealth(r3.url, 503);
    addresses.current = ["127.0.0.1", "127.0.0.2", "127.0.0.3"];
    await upstreams.refresh();
    expect(running.pool.targets.map((target) => target.name)).toContain(`127.0.0.3:${port}`);
    for (let i = 0; i < 12; i++) await ask();
    expect(chatCalls(r3)).toHaveLength(0);
    // Ready: its next check passes and it takes its share.
    await setMockHealth(r3.url, 200);
    const joined = running.pool.targets.find((target) => target.name === `127.0.0.3:${port}`);
    await eventually(
      "r3 in rotation",
      async () => joined?.checkedUp,
      (up) => up === true,
    );
    for (let i = 0; i < 12; i++) await ask();
    expect(chatCalls(r3).length).toBeGreaterThan(0);
  });
});

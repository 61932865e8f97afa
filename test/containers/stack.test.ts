/**
 * The whole stack in containers: both images built from our Dockerfile, on one network, with the gateway
 * started as docker-compose.yml starts it (CONFIG_FILE=config/compose.yaml, init as PID 1). Needs Docker;
 * run with TESTCONTAINERS_RYUK_DISABLED=true TESTCONTAINERS_HOST_OVERRIDE=127.0.0.1 (see `make test-containers`).
 */
import { createHash, randomUUID } from "node:crypto";
import {
  GenericContainer,
  getContainerRuntimeClient,
  Network,
  type StartedNetwork,
  type StartedTestContainer,
  Wait,
} from "testcontainers";
import type { SeenRequest } from "../../mock-remote/src/app";
import { eventually } from "../support/eventually";
import { setMockHealth } from "../support/servers";
import {
  type Answer,
  chat,
  CONTAINER_TEST_TIMEOUT_MS,
  InitContainer,
  REPO_ROOT,
  request,
  THREE_CURLS,
  userMessage,
} from "./support";

jest.setTimeout(CONTAINER_TEST_TIMEOUT_MS);

/**
 * Fixed tags, so repeated runs replace their images instead of piling up `localhost/<uuid>` ones. Built
 * without testcontainers' per-run session label (no reaper runs here to act on it), so an unchanged tree
 * gives the very same image again; they keep the `org.testcontainers=true` label that docker-cleanup.sh removes.
 */
const BUILD_OPTIONS = { deleteOnExit: false };
const GATEWAY_IMAGE = "inference-gateway-test/gateway:latest";
const MOCK_IMAGE = "inference-gateway-test/mock-remote:latest";

let network: StartedNetwork | undefined;
let mockRemote: StartedTestContainer | undefined;
let gateway: StartedTestContainer | undefined;
/** Every container a test started, stopped and removed in afterAll whatever happened. */
const extraContainers: StartedTestContainer[] = [];

let gatewayUrl = "";
let mockUrl = "";

/**
 * The gateway image as compose runs it, on our network. The main gateway waits for Docker to call it
 * healthy (which checks the image's HEALTHCHECK, at 5 s intervals); the extra ones only for /health, to save time.
 */
function gatewayContainer(
  configFile = "config/compose.yaml",
  waitFor: "healthcheck" | "http" = "http",
): GenericContainer {
  return new InitContainer(GATEWAY_IMAGE)
    .withNetwork(requireValue(network, "network"))
    .withEnvironment({ CONFIG_FILE: configFile, SHUTDOWN_TIMEOUT: "10" })
    .withExposedPorts(8080)
    .withWaitStrategy(
      waitFor === "healthcheck" ? Wait.forHealthCheck() : Wait.forHttp("/health", 8080).forStatusCode(200),
    )
    .withStartupTimeout(60_000);
}

function requireValue<T>(value: T | undefined, what: string): T {
  if (value === undefined) throw new Error(`${what} did not start (see beforeAll)`);
  return value;
}

function urlOf(container: StartedTestContainer, port: number): string {
  return `http://${container.getHost()}:${container.getMappedPort(port)}`;
}

/** What mock-remote received, from its /mock/requests endpoint. */
async function seenByMock(): Promise<SeenRequest[]> {
  const response = await fetch(`${mockUrl}/mock/requests`, { signal: AbortSignal.timeout(10_000) });
  return (await response.json()) as SeenRequest[];
}

function remote(mock: Record<string, unknown>, prompt = "Hello world"): Record<string, unknown> {
  return { model: "remote", messages: userMessage(prompt), mock };
}

beforeAll(async () => {
  // Built once for this file and shared. mock-remote first: with the classic builder testcontainers uses,
  // building `gateway` then reuses every cached stage.
  const mockImage = await GenericContainer.fromDockerfile(REPO_ROOT, "Dockerfile")
    .withTarget("mock-remote")
    .build(MOCK_IMAGE, BUILD_OPTIONS);
  await GenericContainer.fromDockerfile(REPO_ROOT, "Dockerfile")
    .withTarget("gateway")
    .build(GATEWAY_IMAGE, BUILD_OPTIONS);

  network = await new Network().start();
  // Side by side: the gateway does not call mock-remote until a request asks it to.
  const [startedMock, startedGateway] = await Promise.allSettled([
    mockImage
      .withNetwork(network)
      .withNetworkAliases("mock-remote")
      .withExposedPorts(8081)
      .withWaitStrategy(Wait.forHealthCheck())
      .withStartupTimeout(60_000)
      .start(),
    gatewayContainer("config/compose.yaml", "healthcheck").start(),
  ]);
  // Kept even when the other failed, so afterAll stops whatever did start.
  if (startedMock.status === "fulfilled") mockRemote = startedMock.value;
  if (startedGateway.status === "fulfilled") gateway = startedGateway.value;
  for (const started of [startedMock, startedGateway]) if (started.status === "rejected") throw started.reason;
  mockUrl = urlOf(requireValue(mockRemote, "mock-remote"), 8081);
  gatewayUrl = urlOf(requireValue(gateway, "gateway"), 8080);
});

afterAll(async () => {
  const containers = [...extraContainers, gateway, mockRemote].filter(
    (c): c is StartedTestContainer => c !== undefined,
  );
  await Promise.allSettled(containers.map((container) => container.stop()));
  // stop() does nothing more for a container a test already stopped without removing: remove those here.
  const client = await getContainerRuntimeClient();
  await Promise.allSettled(
    containers.map((container) => client.container.getById(container.getId()).remove({ force: true, v: true })),
  );
  await network?.stop();
});

describe("the images", () => {
  /** Prints, as JSON, who the process runs as and what the image holds. */
  const PROBE = `
    const fs = require("node:fs");
    console.log(JSON.stringify({
      user: require("node:os").userInfo().username,
      nodeEnv: process.env.NODE_ENV,
      devDependencies: ["typescript", "jest", "ts-jest", "testcontainers", "openai"].filter((p) => fs.existsSync("node_modules/" + p)),
      prodDependencies: ["express", "undici", "yaml"].filter((p) => fs.existsSync("node_modules/" + p)),
      composeConfig: fs.existsSync("config/compose.yaml"),
    }));`;

  it.each([
    ["gateway", () => gateway, true],
    ["mock-remote", () => mockRemote, false],
  ])(
    "%s runs as node with NODE_ENV=production and production dependencies only",
    async (_name, container, hasConfig) => {
      const result = await requireValue(container(), "container").exec(["node", "-e", PROBE]);
      expect(result.exitCode).toBe(0);
      expect(JSON.parse(result.stdout)).toEqual({
        user: "node",
        nodeEnv: "production",
        devDependencies: [],
        prodDependencies: ["express", "undici", "yaml"],
        composeConfig: hasConfig,
      });
    },
  );

  it("reports the gateway healthy through the image's HEALTHCHECK", async () => {
    const client = await getContainerRuntimeClient();
    const inspect = await client.container.inspect(client.container.getById(requireValue(gateway, "gateway").getId()));
    expect(inspect.Config.Healthcheck?.Test?.join(" ")).toContain("/health");
    expect(inspect.State.Health?.Status).toBe("healthy");
  });

  it("checks health without starting Node, and a /health that fails makes the check fail", async () => {
    const container = requireValue(mockRemote, "mock-remote");
    const client = await getContainerRuntimeClient();
    const inspect = await client.container.inspect(client.container.getById(container.getId()));
    const test = inspect.Config.Healthcheck?.Test ?? [];
    // A Node process per check cost ~0.25 s of CPU and, on a busy machine, outlasted the check's timeout:
    // Swarm restarted tasks that were serving (Dockerfile).
    expect(test[0]).toBe("CMD");
    expect(test).not.toContain("node");
    const check = () => container.exec(test.slice(1));
    expect((await check()).exitCode).toBe(0);
    try {
      expect(await setMockHealth(mockUrl, 503)).toBe(200);
      expect((await check()).exitCode).not.toBe(0);
    } finally {
      await setMockHealth(mockUrl, 200);
    }
    expect((await check()).exitCode).toBe(0);
  });
});

describe("the three curls against the containerised gateway", () => {
  it.each(THREE_CURLS)("%s", async (_name, body, expected) => {
    const answer = await chat(gatewayUrl, body);
    expect(answer.status).toBe(200);
    expect(answer.body).toMatchObject(expected);
  });
});

describe("the remote backend, answered by the mock-remote container", () => {
  it("forwards the request to mock-remote under its network alias", async () => {
    const requestId = `containers-${randomUUID()}`;
    const answer = await chat(gatewayUrl, remote({}, "through the network"), { "x-request-id": requestId });
    expect(answer.status).toBe(200);
    expect(answer.headers.get("x-request-id")).toBe(requestId);
    expect(answer.body).toMatchObject({
      backend: "remote",
      choices: [{ message: { content: "Remote: through the network" } }],
    });

    const forwarded = (await seenByMock()).filter((seen) => seen.headers["x-request-id"] === requestId);
    expect(forwarded).toHaveLength(1);
    expect(forwarded[0]).toMatchObject({
      method: "POST",
      path: "/v1/chat/completions",
      body: { messages: userMessage("through the network") },
    });
  });

  it.each([
    ["a reset connection", { fault: "reset" }, 502, "upstream_unreachable"],
    ["a body that is not JSON", { fault: "malformed" }, 502, "upstream_invalid_response"],
    ["an upstream 503", { status: 503 }, 502, "upstream_http_error"],
  ])("turns %s (%j) into %i with an OpenAI error body", async (_what, knobs, status, code) => {
    const answer = await chat(gatewayUrl, remote(knobs));
    expect(answer.status).toBe(status);
    expect(answer.body).toEqual({
      error: { message: expect.stringContaining("Backend 'remote'"), type: "upstream_error", param: null, code },
    });
  });

  describe("with a backend timeout of 1 s", () => {
    let shortTimeoutUrl = "";

    beforeAll(async () => {
      const config = [
        "default_backend: local",
        "backends:",
        "  - name: local",
        "    type: echo",
        "  - name: remote",
        "    type: http",
        "    url: http://mock-remote:8081",
        "    timeout: 1",
        "",
      ].join("\n");
      const started = await gatewayContainer("config/short-timeout.yaml")
        .withCopyContentToContainer([{ content: config, target: "/app/config/short-timeout.yaml", mode: 0o644 }])
        .start();
      extraContainers.push(started);
      shortTimeoutUrl = urlOf(started, 8080);
    });

    it("answers 504 when mock-remote is slower than the timeout", async () => {
      const started = performance.now();
      const answer = await chat(shortTimeoutUrl, remote({ delay_ms: 3000 }));
      expect(answer.status).toBe(504);
      expect(answer.body).toEqual({
        error: {
          message: expect.stringContaining("Backend 'remote'"),
          type: "upstream_error",
          param: null,
          code: "upstream_timeout",
        },
      });
      // It gave up at the timeout instead of waiting for the 3 s answer.
      expect(performance.now() - started).toBeLessThan(2800);
    });

    it("still answers quick requests", async () => {
      const answer = await chat(shortTimeoutUrl, remote({ delay_ms: 100 }));
      expect(answer.status).toBe(200);
      expect(answer.body).toMatchObject({
        backend: "remote",
        choices: [{ message: { content: "Remote: Hello world" } }],
      });
    });
  });
});

describe("streaming through the containers", () => {
  /** The `data:` payloads of a streamed answer, in order. */
  async function streamEvents(body: Record<string, unknown>): Promise<string[]> {
    const response = await fetch(`${gatewayUrl}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ ...body, stream: true }),
      signal: AbortSignal.timeout(30_000),
    });
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toMatch(/^text\/event-stream/);
    return (await response.text())
      .split("\n\n")
      .filter((event) => event.startsWith("data: "))
      .map((event) => event.slice("data: ".length));
  }

  it("relays mock-remote's stream chunk by chunk, ending with [DONE]", async () => {
    const events = await streamEvents(remote({}, "Hello world"));
    expect(events[events.length - 1]).toBe("[DONE]");
    const chunks = events
      .slice(0, -1)
      .map((event) => JSON.parse(event) as { backend: string; choices: { delta: { content?: string } }[] });
    expect(chunks.map((chunk) => chunk.choices[0]?.delta.content ?? "").join("")).toBe("Remote: Hello world");
    expect(chunks.every((chunk) => chunk.backend === "remote")).toBe(true);
  });

  it("reports a stream cut mid-way as an error event before [DONE]", async () => {
    const events = await streamEvents(remote({ fault: "reset", after: 1 }));
    expect(events[events.length - 1]).toBe("[DONE]");
    expect(JSON.parse(events[events.length - 2] ?? "{}")).toMatchObject({
      error: { type: "upstream_error", code: "upstream_stream_error" },
    });
  });
});

describe("auth on, in the container", () => {
  const GATEWAY_KEY = "gw-container-app-3f9a1c7e5b2d8046";
  const HASHED_KEY = "gw-container-hashed-71c5e9a3d0b4f826";
  const UPSTREAM_KEY = "sk-container-upstream-c4e8a2f6b1d93750";
  let authUrl = "";
  let logs = "";

  beforeAll(async () => {
    const config = [
      "default_backend: local",
      "backends:",
      "  - name: local",
      "    type: echo",
      "  - name: remote",
      "    type: http",
      "    url: http://mock-remote:8081",
      "    api_key_env: UPSTREAM_KEY",
      "auth:",
      "  keys:",
      "    - name: app",
      "      key_env: GATEWAY_KEY",
      "    - name: limited",
      `      sha256: ${createHash("sha256").update(HASHED_KEY).digest("hex")}`,
      "      backends: [local]",
      "      limits:",
      "        requests_per_minute: 2",
      "",
    ].join("\n");
    const started = await gatewayContainer("config/auth.yaml")
      .withEnvironment({ CONFIG_FILE: "config/auth.yaml", GATEWAY_KEY, UPSTREAM_KEY })
      // World-readable, with a key hash in it: the gateway must say so at start.
      .withCopyContentToContainer([{ content: config, target: "/app/config/auth.yaml", mode: 0o644 }])
      .withLogConsumer((stream) => stream.on("data", (chunk: Buffer | string) => (logs += chunk.toString())))
      .start();
    extraContainers.push(started);
    authUrl = urlOf(started, 8080);
  });

  it("refuses a request without a key with 401 and OpenAI's error body", async () => {
    const answer = await chat(authUrl, { messages: userMessage("Hello world") });
    expect(answer.status).toBe(401);
    expect(answer.body).toEqual({
      error: { message: expect.any(String), type: "invalid_request_error", param: null, code: "missing_api_key" },
    });
    expect(answer.headers.get("x-should-retry")).toBe("false");
  });

  it.each(THREE_CURLS)("answers %s with the key", async (_name, body, expected) => {
    const answer = await chat(authUrl, body, { authorization: `Bearer ${GATEWAY_KEY}` });
    expect(answer.status).toBe(200);
    expect(answer.body).toMatchObject(expected);
  });

  it("sends mock-remote the upstream key, not the client's", async () => {
    const requestId = `auth-${randomUUID()}`;
    const answer = await chat(authUrl, remote({}), {
      authorization: `Bearer ${GATEWAY_KEY}`,
      "x-request-id": requestId,
    });
    expect(answer.status).toBe(200);
    const forwarded = (await seenByMock()).filter((seen) => seen.headers["x-request-id"] === requestId);
    expect(forwarded).toHaveLength(1);
    expect(forwarded[0]?.headers.authorization).toBe(`Bearer ${UPSTREAM_KEY}`);
    expect(JSON.stringify(forwarded[0])).not.toContain(GATEWAY_KEY);
  });

  it("holds a limited key to its backends and its requests per minute", async () => {
    const limited = { authorization: `Bearer ${HASHED_KEY}` };
    // Every request it makes counts against its 2 per minute, the refused one too.
    expect((await chat(authUrl, remote({}), limited)).status).toBe(403);
    expect((await chat(authUrl, { model: "local", messages: userMessage("Hello world") }, limited)).status).toBe(200);
    const over = await chat(authUrl, { model: "local", messages: userMessage("Hello world") }, limited);
    expect(over.status).toBe(429);
    expect(over.body).toMatchObject({ error: { type: "rate_limit_error", code: "rate_limit_exceeded" } });
    expect(Number(over.headers.get("retry-after"))).toBeGreaterThan(0);
  });

  it("logged key names and the permission warning, and no secret", async () => {
    await eventually(
      "the access line of the limited key's 429",
      async () => logs,
      (text) => text.includes('"status":429'),
      { timeoutMs: 10_000, intervalMs: 100 },
    );
    expect(logs).toContain('"key":"app"');
    expect(logs).toContain('"key":"limited"');
    expect(logs).toContain("config/auth.yaml holds API key hashes and is readable by every user");
    for (const secret of [GATEWAY_KEY, HASHED_KEY, UPSTREAM_KEY]) expect(logs).not.toContain(secret);
  });
});

describe("metrics", () => {
  it("serves per-backend counters on /metrics", async () => {
    await chat(gatewayUrl, { model: "local", messages: userMessage("count me") });
    const text = await (await fetch(`${gatewayUrl}/metrics`, { signal: AbortSignal.timeout(10_000) })).text();
    expect(text).toMatch(
      /^gateway_requests_total\{backend="local",code="200",stream="false",endpoint="chat"\} [1-9]\d*$/m,
    );
    expect(text).toContain('gateway_build_info{version="0.1.0"');
  });
});

describe("health and readiness", () => {
  it("answers /health", async () => {
    const answer = await request(`${gatewayUrl}/health`);
    expect(answer.status).toBe(200);
    expect(answer.body).toEqual({ status: "ok" });
  });

  it("answers /ready while serving", async () => {
    const answer = await request(`${gatewayUrl}/ready`);
    expect(answer.status).toBe(200);
    expect(answer.body).toEqual({ status: "ready" });
  });

  it("lists the backends of config/compose.yaml as models", async () => {
    const answer = await request(`${gatewayUrl}/v1/models`);
    expect(answer.status).toBe(200);
    expect(answer.body).toMatchObject({
      object: "list",
      data: [
        { id: "local", owned_by: "echo" },
        { id: "remote", owned_by: "http" },
      ],
    });
  });
});

describe("docker stop", () => {
  it("lets a request in flight finish with 200, then exits 0", async () => {
    const draining = await gatewayContainer().start();
    extraContainers.push(draining);
    const client = await getContainerRuntimeClient();
    const dockerContainer = client.container.getById(draining.getId());

    const requestId = `graceful-${randomUUID()}`;
    let answeredAt = 0;
    const slow: Promise<Answer> = chat(urlOf(draining, 8080), remote({ delay_ms: 3000 }), {
      "x-request-id": requestId,
    }).then((answer) => {
      answeredAt = performance.now();
      return answer;
    });
    // Stop only once the request has reached mock-remote, so it is truly in flight.
    await eventually(
      "the slow request to reach mock-remote",
      seenByMock,
      (seen) => seen.some((one) => one.headers["x-request-id"] === requestId),
      {
        timeoutMs: 10_000,
        intervalMs: 100,
      },
    );

    const stopIssuedAt = performance.now();
    // 20 s of grace (as compose gives), with the default 5 s DRAIN_DELAY first: long enough that only a gateway that never exits meets SIGKILL.
    await draining.stop({ timeout: 20_000, remove: false });
    const answer = await slow;

    expect(answer.status).toBe(200);
    expect(answer.body).toMatchObject({
      backend: "remote",
      choices: [{ message: { content: "Remote: Hello world" } }],
    });
    expect(answeredAt).toBeGreaterThan(stopIssuedAt);

    const state = (await client.container.inspect(dockerContainer)).State;
    expect(state.Running).toBe(false);
    expect(state.OOMKilled).toBe(false);
    expect(state.ExitCode).toBe(0);
    // The gateway saw SIGTERM (passed on by init) and drained, rather than dying some other way.
    const logs = (await dockerContainer.logs({ stdout: true, stderr: true })).toString("utf8");
    expect(logs).toContain("SIGTERM");

    await client.container.remove(dockerContainer, { removeVolumes: true });
  });
});

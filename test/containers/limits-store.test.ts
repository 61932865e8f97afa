/**
 * `limits_store`: the clients' limits counted in a real Valkey shared by several gateway processes (one of
 * them with WORKERS=2), and what each `on_store_failure` mode does while the store is paused, stopped and
 * restarted under load. Valkey runs in a container published on 127.0.0.1; the gateways are the built
 * program, run on the host. Needs Docker (see `make test-containers`).
 *
 * Versions: a user's machine pulls the official valkey/valkey:8; on the CI machines (no registry) .ci/run
 * builds a stand-in under that tag from Debian's package (Valkey 8.1). Nothing here depends on the minor.
 */
import { execFileSync } from "node:child_process";
import { rmSync } from "node:fs";
import { createServer, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { GenericContainer, type StartedTestContainer, Wait } from "testcontainers";
import { eventually } from "../support/eventually";
import { parseExposition, total } from "../support/exposition";
import { type Started, startGatewayProcess, workDir } from "../support/process";
import { join } from "node:path";
import { CONTAINER_TEST_TIMEOUT_MS, freePort, REPO_ROOT, stackImage } from "./support";

const KEY = "gw-limits-store-team-3c9e1a7f5b";
const AUTH = { authorization: `Bearer ${KEY}` };
const CHAT = { model: "local", messages: [{ role: "user", content: "hi" }] };
/** A request that waits on the store longer than this is hanging, not deciding within timeout_ms. */
const HANG_MS = 1500;

let valkey: StartedTestContainer;
let valkeyPort: number;
const started: Started[] = [];
const dirs: string[] = [];

beforeAll(async () => {
  valkeyPort = await freePort();
  valkey = await new GenericContainer(stackImage("valkey"))
    // A fixed host port: the gateways must find the store again after `docker stop` and `docker start`.
    .withExposedPorts({ container: 6379, host: valkeyPort })
    .withCommand(["valkey-server", "--protected-mode", "no", "--save", "", "--appendonly", "no"])
    .withWaitStrategy(Wait.forLogMessage(/Ready to accept connections/))
    .start();
}, CONTAINER_TEST_TIMEOUT_MS);

afterAll(async () => {
  await valkey?.stop();
});

afterEach(async () => {
  for (const gateway of started.splice(0)) {
    gateway.child.kill("SIGKILL");
    await gateway.exited();
  }
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  // A paused or stopped store from a failed test must not fail the next one.
  docker("unpause", true);
  docker("start", true);
  await cli("FLUSHALL");
});

function docker(command: "pause" | "unpause" | "stop" | "start", quiet = false): void {
  try {
    execFileSync("docker", [command, valkey.getId()], { stdio: "ignore", timeout: 30_000 });
  } catch (error) {
    if (!quiet) throw error;
  }
}

async function cli(...args: string[]): Promise<string> {
  const result = await valkey.exec(["valkey-cli", ...args]);
  if (result.exitCode !== 0) throw new Error(`valkey-cli ${args.join(" ")}: ${result.output}`);
  return result.output.trim();
}

function config(limits: string, store = "", backend = "  - name: local\n    type: echo\n"): string {
  return `default_backend: local
backends:
${backend}auth:
  keys:
    - name: team
      key_env: TEAM_KEY
      limits:
${limits
  .split("\n")
  .map((line) => `        ${line}`)
  .join("\n")}
limits_store:
  url: redis://127.0.0.1:${valkeyPort}
${store
  .split("\n")
  .filter((line) => line !== "")
  .map((line) => `  ${line}`)
  .join("\n")}
`;
}

async function gateway(configYaml: string, workers = 1, env: Record<string, string> = {}): Promise<Started> {
  const dir = workDir(configYaml, "gateway-store-");
  dirs.push(dir);
  const gatewayProcess = await startGatewayProcess(dir, {
    CONFIG_FILE: "config.yaml",
    TEAM_KEY: KEY,
    WORKERS: String(workers),
    DRAIN_DELAY: "0",
    ...env,
  });
  started.push(gatewayProcess);
  if (workers > 1) {
    // Both workers listening: node:cluster hands connections to every worker that is.
    await eventually(
      `${workers} workers to listen`,
      async () => gatewayProcess.output().split('"gateway listening"').length - 1,
      (count) => count >= workers,
      { timeoutMs: 10_000 },
    );
  }
  return gatewayProcess;
}

interface Answer {
  readonly status: number;
  readonly headers: Headers;
  readonly text: string;
  readonly ms: number;
}

async function post(url: string, body: unknown = CHAT): Promise<Answer> {
  const start = performance.now();
  // A new connection each time (no keep-alive): under WORKERS=2 each may reach the other worker.
  const response = await fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", connection: "close", ...AUTH },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(30_000),
  });
  const text = await response.text();
  return { status: response.status, headers: response.headers, text, ms: performance.now() - start };
}

async function metric(url: string, name: string, labels: Record<string, string> = {}): Promise<number> {
  const response = await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(10_000) });
  return total(parseExposition(await response.text()), name, labels);
}

function statuses(answers: readonly Answer[]): Record<number, number> {
  const counts: Record<number, number> = {};
  for (const answer of answers) counts[answer.status] = (counts[answer.status] ?? 0) + 1;
  return counts;
}

/** An upstream that holds every request until the test answers it. */
async function heldUpstream(): Promise<{ server: Server; held: ServerResponse[]; url: string }> {
  const held: ServerResponse[] = [];
  const server = createServer((req, res) => {
    req.resume();
    held.push(res);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { server, held, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

function answer(res: ServerResponse, totalTokens = 30): void {
  res.writeHead(200, { "content-type": "application/json" });
  res.end(
    JSON.stringify({
      choices: [{ index: 0, message: { role: "assistant", content: "ok" }, finish_reason: "stop" }],
      usage: { prompt_tokens: 10, completion_tokens: totalTokens - 10, total_tokens: totalTokens },
    }),
  );
}

function httpBackend(url: string): string {
  return `  - name: local\n    type: http\n    url: ${url}\n    retries: 0\n`;
}

describe("limits_store: one count for every process", () => {
  it(
    "admits a key's requests per minute once across two gateways, one of them with WORKERS=2",
    async () => {
      const yaml = config("requests_per_minute: 12");
      const [one, two] = [await gateway(yaml), await gateway(yaml, 2)];
      const answers: Answer[] = [];
      for (let i = 0; i < 36; i++) answers.push(await post(i % 2 === 0 ? one.url : two.url));
      expect(statuses(answers)).toEqual({ 200: 12, 429: 24 });
      const refused = answers.find((reply) => reply.status === 429);
      expect(refused?.text).toContain("12 requests per minute");
      const wait = Number(refused?.headers.get("retry-after"));
      expect(wait).toBeGreaterThanOrEqual(1);
      expect(wait).toBeLessThanOrEqual(60);
      // Each process alone would have admitted 12 of its 18. Both sides say what they refused.
      const rejected =
        (await metric(one.url, "gateway_rejected_requests_total", { reason: "requests_per_minute" })) +
        (await metric(two.url, "gateway_rejected_requests_total", { reason: "requests_per_minute" }));
      expect(rejected).toBe(24);
      // Each started listening once connected to the store: even its first requests were decided there.
      expect(await metric(one.url, "gateway_limits_decisions_without_store_total")).toBe(0);
      expect(await metric(two.url, "gateway_limits_decisions_without_store_total")).toBe(0);
      // Every key of the client shares one hash tag (one Redis Cluster slot) and expires by itself.
      const keys = (await cli("--scan")).split("\n").filter((key) => key !== "");
      expect(keys.length).toBeGreaterThan(0);
      for (const key of keys) {
        expect(key).toMatch(/^gateway:\{key:team\}:[rtlv]$/);
        const ttl = Number(await cli("PTTL", key));
        expect(ttl).toBeGreaterThan(0);
        expect(ttl).toBeLessThanOrEqual(62_000);
      }
    },
    CONTAINER_TEST_TIMEOUT_MS,
  );

  it(
    "holds a key's concurrent requests across gateways, and a killed gateway's slots lapse after lease_seconds",
    async () => {
      const upstream = await heldUpstream();
      try {
        const yaml = config("concurrent_requests: 2", "lease_seconds: 3", httpBackend(upstream.url));
        const [one, two] = [await gateway(yaml), await gateway(yaml)];
        const first = [post(one.url), post(one.url)];
        await eventually(
          "two requests held upstream",
          async () => upstream.held.length,
          (count) => count === 2,
        );
        const refused = await post(two.url);
        expect(refused.status).toBe(503);
        expect(refused.text).toContain("2 requests in flight, its limit");
        // The gateway holding both slots dies without giving them back.
        one.child.kill("SIGKILL");
        await one.exited();
        await Promise.allSettled(first);
        upstream.held.splice(0).forEach((res) => res.destroy());
        expect((await post(two.url)).status).toBe(503);
        const lapsedAt = performance.now();
        // One request at a time: refused at once while the leases live; once admitted, answered upstream.
        const attempt = async (): Promise<number> => {
          const reply = post(two.url);
          const held = eventually(
            "the request upstream",
            async () => upstream.held.length,
            (count) => count > 0,
            { timeoutMs: 2000 },
          ).then(
            () => "held" as const,
            () => "not held" as const,
          );
          if ((await Promise.race([reply.then(() => "answered" as const), held])) === "held")
            upstream.held.splice(0).forEach((res) => answer(res));
          return (await reply).status;
        };
        const next = await eventually("the dead gateway's leases to lapse", attempt, (status) => status === 200, {
          timeoutMs: 10_000,
          intervalMs: 250,
        });
        expect(next).toBe(200);
        // Not before the lease ran out (3 s, renewed every second while the request was alive).
        expect(performance.now() - lapsedAt).toBeGreaterThan(1000);
      } finally {
        upstream.held.splice(0).forEach((res) => res.destroy());
        await new Promise((resolve) => upstream.server.close(resolve));
      }
    },
    CONTAINER_TEST_TIMEOUT_MS,
  );

  it(
    "reserves max_tokens at admission across gateways, and settles to the real usage when the answer ends",
    async () => {
      const upstream = await heldUpstream();
      try {
        const yaml = config("tokens_per_minute: 1000", "", httpBackend(upstream.url));
        const [one, two] = [await gateway(yaml), await gateway(yaml)];
        const big = post(one.url, { ...CHAT, max_tokens: 900 });
        await eventually(
          "the big request held upstream",
          async () => upstream.held.length,
          (count) => count === 1,
        );
        // 900 reserved of 1000: another 200 does not fit, on the other gateway too.
        const refused = await post(two.url, { ...CHAT, max_tokens: 200 });
        expect(refused.status).toBe(429);
        expect(refused.text).toContain("1000 tokens per minute");
        answer(upstream.held.shift() as ServerResponse, 30);
        expect((await big).status).toBe(200);
        // Settled: 30 used, the 900 reservation gone.
        await eventually(
          "the tokens charged in the store",
          async () => (await cli("HVALS", "gateway:{key:team}:t")).split("\n").map(Number),
          (values) => values.reduce((sum, value) => sum + value, 0) === 30,
        );
        expect(await cli("HLEN", "gateway:{key:team}:v")).toBe("0");
        // The refusal said when to come back (the gateway remembers it that long): then there is room.
        const wait = Number(refused.headers.get("retry-after"));
        expect(wait).toBe(1);
        await new Promise((resolve) => setTimeout(resolve, wait * 1000));
        const admitted = post(two.url, { ...CHAT, max_tokens: 200 });
        await eventually(
          "the second request held upstream",
          async () => upstream.held.length,
          (count) => count === 1,
        );
        answer(upstream.held.shift() as ServerResponse, 50);
        expect((await admitted).status).toBe(200);
      } finally {
        upstream.held.splice(0).forEach((res) => res.destroy());
        await new Promise((resolve) => upstream.server.close(resolve));
      }
    },
    CONTAINER_TEST_TIMEOUT_MS,
  );
});

/** `count` requests, `concurrency` at a time, every answer kept. */
async function load(url: string, count: number, concurrency: number): Promise<Answer[]> {
  const answers: Answer[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < count) {
        next++;
        answers.push(await post(url));
      }
    }),
  );
  return answers;
}

describe("limits_store: when the store fails", () => {
  const store = "on_store_failure: MODE\nexpected_replicas: 2\ntimeout_ms: 50";

  it(
    "local: while the store is paused each process enforces its share (limit / replicas), then goes back to the store",
    async () => {
      const gw = await gateway(config("requests_per_minute: 20", store.replace("MODE", "local")));
      expect(statuses(await load(gw.url, 3, 1))).toEqual({ 200: 3 });
      expect(await metric(gw.url, "gateway_limits_store_up")).toBe(1);
      expect(await metric(gw.url, "gateway_limits_decisions_without_store_total")).toBe(0);
      docker("pause");
      const paused = await load(gw.url, 30, 4);
      // Its share is 20 / 2 = 10 counted here alone: the 3 the store had counted are not known to it.
      expect(statuses(paused)).toEqual({ 200: 10, 429: 20 });
      expect(Math.max(...paused.map((reply) => reply.ms))).toBeLessThan(HANG_MS);
      expect(await metric(gw.url, "gateway_limits_store_up")).toBe(0);
      expect(await metric(gw.url, "gateway_limits_decisions_without_store_total", { outcome: "admitted" })).toBe(10);
      expect(await metric(gw.url, "gateway_limits_decisions_without_store_total", { outcome: "refused" })).toBe(20);
      docker("unpause");
      // Found again without a request (a PING each second), then counting in the store again: 3 + 17 = 20.
      await eventually(
        "the store to be up again",
        () => metric(gw.url, "gateway_limits_store_up"),
        (up) => up === 1,
        { timeoutMs: 10_000, intervalMs: 200 },
      );
      const after = await load(gw.url, 20, 1);
      const admitted = after.filter((reply) => reply.status === 200).length;
      // Requests sent to the paused store before the breaker opened (4 at once here), and a trial a second
      // after, ran when it woke up: counted there too.
      expect(admitted).toBeGreaterThanOrEqual(11);
      expect(admitted).toBeLessThanOrEqual(17);
    },
    CONTAINER_TEST_TIMEOUT_MS,
  );

  it(
    "open: while the store is stopped every request is admitted and counted as decided without it",
    async () => {
      const gw = await gateway(config("requests_per_minute: 5", store.replace("MODE", "open")));
      docker("stop");
      const stopped = await load(gw.url, 20, 4);
      expect(statuses(stopped)).toEqual({ 200: 20 });
      expect(Math.max(...stopped.map((reply) => reply.ms))).toBeLessThan(HANG_MS);
      expect(await metric(gw.url, "gateway_limits_store_up")).toBe(0);
      expect(await metric(gw.url, "gateway_limits_decisions_without_store_total", { outcome: "admitted" })).toBe(20);
      docker("start");
      await eventually(
        "the store to be up again",
        () => metric(gw.url, "gateway_limits_store_up"),
        (up) => up === 1,
        { timeoutMs: 15_000, intervalMs: 200 },
      );
      // A restarted store starts with empty books: 5 again.
      expect(statuses(await load(gw.url, 8, 1))).toEqual({ 200: 5, 429: 3 });
    },
    CONTAINER_TEST_TIMEOUT_MS,
  );

  it(
    "closed: while the store is paused, then restarted, limited requests get 503 limits_unavailable with retry-after",
    async () => {
      const gw = await gateway(config("requests_per_minute: 50", store.replace("MODE", "closed")));
      docker("pause");
      const paused = await load(gw.url, 12, 4);
      expect(statuses(paused)).toEqual({ 503: 12 });
      expect(Math.max(...paused.map((reply) => reply.ms))).toBeLessThan(HANG_MS);
      const refused = JSON.parse(paused[0]?.text ?? "{}") as { error?: { code?: string; type?: string } };
      expect(refused.error).toMatchObject({ code: "limits_unavailable", type: "server_error" });
      expect(paused[0]?.headers.get("retry-after")).toBe("1");
      expect(await metric(gw.url, "gateway_rejected_requests_total", { reason: "limits_store_unavailable" })).toBe(12);
      docker("unpause");
      await valkey.restart();
      await eventually(
        "the store to be up again",
        () => metric(gw.url, "gateway_limits_store_up"),
        (up) => up === 1,
        { timeoutMs: 15_000, intervalMs: 200 },
      );
      expect(statuses(await load(gw.url, 10, 2))).toEqual({ 200: 10 });
      // One line each way, however many trials failed each second while it was away.
      expect(gw.output().split("limits store unreachable: deciding without it")).toHaveLength(2);
      expect(gw.output().split("limits store answering again")).toHaveLength(2);
    },
    CONTAINER_TEST_TIMEOUT_MS,
  );
});

describe("limits_store over TLS (rediss://) with a password from password_env", () => {
  const PASSWORD = "valkey-test-password-6f1c9e2a";
  const TLS_DIR = join(REPO_ROOT, "test", "containers", "tls");
  let secure: StartedTestContainer;
  let securePort: number;

  beforeAll(async () => {
    securePort = await freePort();
    secure = await new GenericContainer(stackImage("valkey"))
      .withExposedPorts({ container: 6380, host: securePort })
      .withCopyFilesToContainer(
        ["ca.pem", "server.pem", "server-key.pem"].map((file) => ({
          source: join(TLS_DIR, file),
          target: `/tls/${file}`,
          mode: 0o644,
        })),
      )
      .withCommand([
        "valkey-server",
        "--port",
        "0",
        "--tls-port",
        "6380",
        "--tls-cert-file",
        "/tls/server.pem",
        "--tls-key-file",
        "/tls/server-key.pem",
        "--tls-ca-cert-file",
        "/tls/ca.pem",
        "--tls-auth-clients",
        "no",
        "--requirepass",
        PASSWORD,
        "--protected-mode",
        "no",
        "--save",
        "",
        "--appendonly",
        "no",
      ])
      .withWaitStrategy(Wait.forLogMessage(/Ready to accept connections/))
      .start();
  }, CONTAINER_TEST_TIMEOUT_MS);

  afterAll(async () => {
    await secure?.stop();
  });

  function secureGateway(env: Record<string, string>): Promise<Started> {
    const yaml = config("requests_per_minute: 5", `password_env: STORE_PASSWORD\non_store_failure: closed`);
    return gateway(yaml.replace(`redis://127.0.0.1:${valkeyPort}`, `rediss://127.0.0.1:${securePort}`), 1, env);
  }

  it(
    "counts in a Valkey that speaks only TLS and wants a password, and never prints the password",
    async () => {
      const gw = await secureGateway({ STORE_PASSWORD: PASSWORD, NODE_EXTRA_CA_CERTS: join(TLS_DIR, "ca.pem") });
      await eventually(
        "the store to answer",
        () => metric(gw.url, "gateway_limits_store_up"),
        (up) => up === 1,
        { timeoutMs: 10_000, intervalMs: 100 },
      );
      expect(statuses(await load(gw.url, 8, 1))).toEqual({ 200: 5, 429: 3 });
      expect(await metric(gw.url, "gateway_limits_decisions_without_store_total")).toBe(0);
      // The store is named in the log, without its password.
      expect(gw.output()).toContain(`"store":"rediss://127.0.0.1:${securePort}/0"`);
      expect(gw.output()).not.toContain(PASSWORD);
    },
    CONTAINER_TEST_TIMEOUT_MS,
  );

  it.each([
    ["a certificate it does not trust", { STORE_PASSWORD: PASSWORD }],
    ["a wrong password", { STORE_PASSWORD: "not-the-password-0000", NODE_EXTRA_CA_CERTS: join(TLS_DIR, "ca.pem") }],
  ])(
    "does not use a store with %s: it is down, and limited requests are decided without it",
    async (_what, env) => {
      const gw = await secureGateway(env);
      const answers = await load(gw.url, 4, 1);
      // on_store_failure: closed.
      expect(statuses(answers)).toEqual({ 503: 4 });
      expect(await metric(gw.url, "gateway_limits_store_up")).toBe(0);
      expect(gw.output()).not.toContain(PASSWORD);
      expect(gw.output()).not.toContain("not-the-password");
    },
    CONTAINER_TEST_TIMEOUT_MS,
  );
});

describe("limits_store on Redis 7", () => {
  // The tag .ci/run makes its stand-in under (Debian bookworm's Redis 7.0); a user's machine pulls redis:7.
  const REDIS_IMAGE = "redis:7";
  let redis: StartedTestContainer;
  let redisPort: number;

  beforeAll(async () => {
    redisPort = await freePort();
    redis = await new GenericContainer(REDIS_IMAGE)
      .withExposedPorts({ container: 6379, host: redisPort })
      .withCommand(["redis-server", "--protected-mode", "no", "--save", "", "--appendonly", "no"])
      .withWaitStrategy(Wait.forLogMessage(/Ready to accept connections/))
      .start();
  }, CONTAINER_TEST_TIMEOUT_MS);

  afterAll(async () => {
    await redis?.stop();
  });

  it(
    "counts requests, leases and tokens across two gateways as Valkey does",
    async () => {
      // concurrent_requests 2, not 1: a lease is given back one round trip after its answer ends, and the next
      // request, sent the moment that answer arrived, may reach the store first (README, "Scaling out").
      const yaml = config("requests_per_minute: 6\nconcurrent_requests: 2\ntokens_per_minute: 100000").replace(
        `redis://127.0.0.1:${valkeyPort}`,
        `redis://127.0.0.1:${redisPort}`,
      );
      const [one, two] = [await gateway(yaml), await gateway(yaml)];
      const answers: Answer[] = [];
      for (let i = 0; i < 12; i++) answers.push(await post(i % 2 === 0 ? one.url : two.url));
      expect(statuses(answers)).toEqual({ 200: 6, 429: 6 });
      const redisCli = async (...args: string[]): Promise<string> =>
        (await redis.exec(["redis-cli", ...args])).output.trim();
      // Every lease given back, the tokens of the six answers charged, nothing decided without the store.
      expect(await redisCli("ZCARD", "gateway:{key:team}:l")).toBe("0");
      const tokens = (await redisCli("HVALS", "gateway:{key:team}:t")).split("\n").map(Number);
      expect(tokens.reduce((sum, value) => sum + value, 0)).toBeGreaterThanOrEqual(6);
      expect(await metric(one.url, "gateway_limits_decisions_without_store_total")).toBe(0);
      expect(await metric(two.url, "gateway_limits_decisions_without_store_total")).toBe(0);
    },
    CONTAINER_TEST_TIMEOUT_MS,
  );
});

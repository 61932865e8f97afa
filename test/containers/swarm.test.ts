/**
 * deploy/swarm/stack.yml on a real single-node Docker Swarm: three gateway replicas counting one key's limit
 * together in the stack's Valkey, a rolling update (`docker service update --force`) under a steady load of
 * plain and streamed requests, and the stack's Prometheus finding every replica through DNS.
 *
 * The stack file users get is deployed as written but for what these machines cannot do (see
 * ../shared/docs/docker.md): the ingress routing mesh and service VIPs do not work here, so every service gets
 * `endpoint_mode: dnsrr` and no published port, and the test's client runs in a container on the stack's
 * (attachable) network, where `tasks.gateway` resolves to every gateway task (test/containers/swarm-client.mjs).
 * The gateway's config is deploy/swarm/config.yaml plus two API keys. The swarm is made here and left at the
 * end, unless this engine was in a swarm already (then only the test's stack is removed).
 */
import { execFile, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { parse, stringify } from "yaml";
import { eventually } from "../support/eventually";
import { CONTAINER_TEST_TIMEOUT_MS, REPO_ROOT } from "./support";

jest.setTimeout(CONTAINER_TEST_TIMEOUT_MS);

const run = promisify(execFile);
const STACK = "gwswarmtest";
const GATEWAY_IMAGE = "inference-gateway:swarm-test";
const MOCK_IMAGE = "inference-gateway-mock:swarm-test";
const LIMITED_KEY = "gw-swarm-limited-4b7d1e9a2c6f";
const LOAD_KEY = "gw-swarm-load-8e2a5c0f7d3b";
const LIMIT = 20;

let dir: string;
let madeSwarm = false;

async function docker(args: readonly string[], timeoutMs = 120_000): Promise<string> {
  const { stdout } = await run("docker", args, { timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 });
  return stdout.trim();
}

/** Runs swarm-client.mjs in a container on the stack's network and returns its JSON line. */
async function client<T>(mode: string, env: Record<string, string> = {}, timeoutMs = 120_000): Promise<T> {
  const output = await docker(
    [
      "run",
      "--rm",
      "--network",
      `${STACK}_default`,
      "-v",
      `${join(REPO_ROOT, "test", "containers")}:/client:ro`,
      ...Object.entries(env).flatMap(([name, value]) => ["-e", `${name}=${value}`]),
      "--entrypoint",
      "node",
      GATEWAY_IMAGE,
      "/client/swarm-client.mjs",
      mode,
    ],
    timeoutMs,
  );
  return JSON.parse(output.split("\n").pop() ?? "") as T;
}

/** The ids of the gateway service's tasks meant to be running. */
async function runningTasks(): Promise<string[]> {
  const ids = await docker(["service", "ps", "-q", "--filter", "desired-state=running", `${STACK}_gateway`]);
  return ids.split("\n").filter((id) => id !== "");
}

/** What a docker command printed, even when it failed (a task that is gone can fail it): stdout rides on the error. */
async function printed(args: readonly string[]): Promise<string> {
  return run("docker", args, { timeout: 60_000, maxBuffer: 64 * 1024 * 1024 }).then(
    ({ stdout, stderr }) => `${stdout}${stderr}`,
    (error: unknown) => {
      const { stdout = "", stderr = "" } = error as { stdout?: string; stderr?: string };
      return `${stdout}${stderr}${String(error)}`;
    },
  );
}

/**
 * A failed run's evidence: when requests failed, every task of the stack (a task restarted by Swarm shows
 * why, e.g. an unhealthy container), and what the gateway tasks logged of note.
 */
async function printEvidence(failures: readonly { problem: string; ip: string; at: string }[]): Promise<void> {
  const tasks = await printed([
    "stack",
    "ps",
    "--no-trunc",
    "--format",
    "{{.Name}} {{.CurrentState}} {{.Error}}",
    STACK,
  ]);
  const log = await printed(["service", "logs", "--timestamps", "--no-trunc", `${STACK}_gateway`]);
  const lines = log.split("\n").filter((line) => !line.includes('"level":"info"') || /"status":5\d\d/.test(line));
  console.error(
    `failures: ${JSON.stringify(failures)}\ntasks:\n${tasks}\ngateway log (warnings, errors, 5xx):\n${lines.join("\n")}`,
  );
}

/** A by-backend sum as one comparable string, whatever order its keys came in. */
function canonical(sums: Record<string, number>): string {
  return JSON.stringify(Object.entries(sums).sort(([a], [b]) => a.localeCompare(b)));
}

function sha256(text: string): string {
  return createHash("sha256").update(text).digest("hex");
}

/** The users' stack file with only what these machines lack changed: dnsrr instead of VIPs, no ingress ports. */
function testStack(configFile: string): string {
  const stack = parse(readFileSync(join(REPO_ROOT, "deploy", "swarm", "stack.yml"), "utf8")) as {
    services: Record<string, { image: string; ports?: unknown; deploy?: Record<string, unknown> }>;
    configs: Record<string, { file: string }>;
  };
  for (const service of Object.values(stack.services)) {
    delete service.ports;
    service.deploy = { ...service.deploy, endpoint_mode: "dnsrr" };
  }
  const { gateway, "mock-remote": mock } = stack.services;
  if (gateway === undefined || mock === undefined) throw new Error("stack.yml lost its gateway or mock-remote");
  gateway.image = GATEWAY_IMAGE;
  mock.image = MOCK_IMAGE;
  for (const config of Object.values(stack.configs)) config.file = join(REPO_ROOT, "deploy", "swarm", config.file);
  const gatewayConfig = stack.configs["gateway-config"];
  if (gatewayConfig === undefined) throw new Error("stack.yml lost its gateway-config");
  gatewayConfig.file = configFile;
  return stringify(stack);
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "gateway-swarm-"));
  await docker(["build", "-q", "--target", "gateway", "-t", GATEWAY_IMAGE, REPO_ROOT], 600_000);
  await docker(["build", "-q", "--target", "mock-remote", "-t", MOCK_IMAGE, REPO_ROOT], 600_000);
  if ((await docker(["info", "--format", "{{.Swarm.LocalNodeState}}"])) !== "active") {
    await docker(["swarm", "init", "--advertise-addr", "127.0.0.1"]);
    madeSwarm = true;
  }
  const config = `${readFileSync(join(REPO_ROOT, "deploy", "swarm", "config.yaml"), "utf8")}
auth:
  keys:
    - name: limited
      sha256: ${sha256(LIMITED_KEY)}
      limits:
        requests_per_minute: ${LIMIT}
    - name: load
      sha256: ${sha256(LOAD_KEY)}
`;
  writeFileSync(join(dir, "config.yaml"), config);
  writeFileSync(join(dir, "stack.yml"), testStack(join(dir, "config.yaml")));
  await docker(["stack", "deploy", "--detach=true", "-c", join(dir, "stack.yml"), STACK]);
  const ready = await client<{ ready: boolean; tasks: string[] }>(
    "ready",
    // The stack is up when every gateway reaches both mock-remotes, not only when it answers /health: the
    // load below is about the rolling update, not about a stack still starting.
    { EXPECT: "3", REMOTE_TARGETS: "2", TIMEOUT_MS: "120000" },
    180_000,
  );
  if (!ready.ready) throw new Error(`the stack's gateways did not come up: ${JSON.stringify(ready)}`);
}, CONTAINER_TEST_TIMEOUT_MS);

afterAll(async () => {
  const quiet = { stdio: "ignore" as const, timeout: 120_000 };
  spawnSync("docker", ["stack", "rm", STACK], quiet);
  // The stack's network goes once its tasks have stopped; leaving the swarm needs none of them running.
  for (let i = 0; i < 60; i++) {
    const left = spawnSync("docker", ["network", "ls", "-q", "--filter", `name=${STACK}_`], { encoding: "utf8" });
    if (left.stdout.trim() === "") break;
    spawnSync("sleep", ["1"]);
  }
  if (madeSwarm) spawnSync("docker", ["swarm", "leave", "--force"], quiet);
  spawnSync("docker", ["image", "rm", GATEWAY_IMAGE, MOCK_IMAGE], quiet);
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
});

describe("deploy/swarm/stack.yml on a single-node swarm", () => {
  it("counts one key's requests per minute once across the three replicas, in the stack's Valkey", async () => {
    const result = await client<{ statuses: Record<string, number>; byTask: Record<string, Record<string, number>> }>(
      "limit",
      { KEY: LIMITED_KEY, COUNT: String(LIMIT * 3) },
    );
    // Per replica, each would have admitted LIMIT of its LIMIT: 3 x LIMIT in all.
    expect(result.statuses).toEqual({ 200: LIMIT, 429: 2 * LIMIT });
    expect(Object.keys(result.byTask)).toHaveLength(3);
    for (const statuses of Object.values(result.byTask)) expect(statuses[200] ?? 0).toBeLessThan(LIMIT);
  });

  it("rolls every replica (start-first) under steady plain and streamed load: 0 failed, 0 streams cut", async () => {
    const before = await runningTasks();
    const load = client<{
      plain: { ok: number; failed: number; errors: Record<string, number> };
      streams: { ok: number; cut: number; errors: Record<string, number> };
      failures: { problem: string; ip: string; at: string }[];
      tasksSeen: string[];
    }>("load", { KEY: LOAD_KEY, SECONDS: "50", RATE: "20", STREAMS: "4" }, 180_000);
    await new Promise((resolve) => setTimeout(resolve, 4000));
    // Blocks until every task is replaced (or the update fails, which rolls back and fails this command).
    await docker(["service", "update", "--force", "--detach=false", `${STACK}_gateway`], 240_000);
    const result = await load;
    if (result.failures.length > 0) await printEvidence(result.failures);
    expect(result.plain.errors).toEqual({});
    expect(result.streams.errors).toEqual({});
    expect(result.plain.ok).toBeGreaterThan(500);
    expect(result.streams.ok).toBeGreaterThan(100);
    // Every task was replaced, and the load ran across it: it met old tasks and new ones.
    const after = await runningTasks();
    expect(after).toHaveLength(3);
    expect(after.filter((task) => before.includes(task))).toEqual([]);
    expect(result.tasksSeen.length).toBeGreaterThan(3);
  });

  it("lets Prometheus find every gateway, and every gateway find both mock-remote tasks, through DNS", async () => {
    const seen = await eventually(
      "Prometheus' sums by backend to match the replicas' /metrics",
      () =>
        client<{
          tasks: string[];
          direct: Record<string, number>;
          prometheus: Record<string, number>;
          targets: number;
          remoteTargetsUp: number[];
        }>("metrics"),
      (metrics) =>
        metrics.targets === 3 &&
        // Every gateway found both mock-remote tasks through tasks.mock-remote (`discovery: dns`).
        metrics.remoteTargetsUp.length === 3 &&
        metrics.remoteTargetsUp.every((up) => up === 2) &&
        Object.keys(metrics.direct).length > 0 &&
        canonical(metrics.prometheus) === canonical(metrics.direct),
      { timeoutMs: 60_000, intervalMs: 3000 },
    );
    // The replicas running now are the ones the rolling update started: they served the load's requests.
    expect(seen.direct.remote).toBeGreaterThan(0);
  });
});

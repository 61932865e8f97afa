/**
 * The real docker-compose.yml, brought up as a user brings it up (built, gateway waiting for mock-remote to
 * be healthy), published on 127.0.0.1 at a free port, and checked end to end through that port.
 * Needs Docker with Compose v2; run with TESTCONTAINERS_RYUK_DISABLED=true TESTCONTAINERS_HOST_OVERRIDE=127.0.0.1.
 */
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import {
  DockerComposeEnvironment,
  getContainerRuntimeClient,
  type StartedDockerComposeEnvironment,
  Wait,
} from "testcontainers";
import { eventually } from "../support/eventually";
import { chat, CONTAINER_TEST_TIMEOUT_MS, freePort, HTTP_TIMEOUT_MS, REPO_ROOT, request, THREE_CURLS } from "./support";

jest.setTimeout(CONTAINER_TEST_TIMEOUT_MS);

/** Fixed, so `docker-cleanup.sh inference-gateway-test` in .ci/run removes whatever a crashed run left. */
const PROJECT = "inference-gateway-test";

let environment: StartedDockerComposeEnvironment | undefined;
let port = 0;
let gatewayUrl = "";

beforeAll(async () => {
  port = await freePort();
  environment = await new DockerComposeEnvironment(REPO_ROOT, "docker-compose.yml")
    .withProjectName(PROJECT)
    .withBuild()
    .withEnvironment({ GATEWAY_BIND: "127.0.0.1", GATEWAY_PORT: String(port) })
    .withWaitStrategy("mock-remote-1", Wait.forHealthCheck())
    .withWaitStrategy("gateway-1", Wait.forHealthCheck())
    .withStartupTimeout(120_000)
    .up();
  gatewayUrl = `http://127.0.0.1:${port}`;
});

afterAll(async () => {
  await environment?.down({ removeVolumes: true });
});

function requireEnvironment(): StartedDockerComposeEnvironment {
  if (environment === undefined) throw new Error("the compose environment did not start (see beforeAll)");
  return environment;
}

describe("docker compose up", () => {
  it.each(THREE_CURLS)("answers the curl for %s on the published port", async (_name, body, expected) => {
    const answer = await chat(gatewayUrl, body);
    expect(answer.status).toBe(200);
    expect(answer.body).toMatchObject(expected);
  });

  it.each(["local", "remote"])("answers POST /v1/embeddings for %s on the published port", async (model) => {
    const answer = await request(`${gatewayUrl}/v1/embeddings`, { body: { model, input: ["hello", "world"] } });
    expect(answer.status).toBe(200);
    expect(answer.body).toMatchObject({ object: "list", backend: model, usage: { prompt_tokens: 2 } });
    expect(answer.body.data).toHaveLength(2);
  });

  it.each(["local", "remote"])("answers POST /v1/completions for %s on the published port", async (model) => {
    const answer = await request(`${gatewayUrl}/v1/completions`, { body: { model, prompt: "Hello there", n: 2 } });
    expect(answer.status).toBe(200);
    const prefix = model === "local" ? "Echo" : "Remote";
    expect(answer.body).toMatchObject({
      object: "text_completion",
      backend: model,
      choices: [
        { index: 0, text: `${prefix}: Hello there` },
        { index: 1, text: `${prefix}: Hello there` },
      ],
    });
  });

  it.each(["local", "remote"])("answers POST /v1/responses for %s, whole and streamed", async (model) => {
    const answer = await request(`${gatewayUrl}/v1/responses`, { body: { model, input: "Hello there" } });
    expect(answer.status).toBe(200);
    expect(answer.body).toMatchObject({ object: "response", status: "completed", backend: model });
    const streamed = await fetch(`${gatewayUrl}/v1/responses`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model, input: "Hello there", stream: true }),
      signal: AbortSignal.timeout(HTTP_TIMEOUT_MS),
    });
    expect(streamed.status).toBe(200);
    const events = (await streamed.text()).split("\n\n").filter((event) => event !== "");
    expect(events[0]).toMatch(/^event: response.created\n/);
    expect(events.at(-1)).toMatch(/^event: response.completed\n/);
  });

  it("reloads its mounted config on `docker compose kill -s HUP gateway`, and keeps serving", async () => {
    const compose = spawnSync("docker", ["compose", "-p", PROJECT, "kill", "-s", "HUP", "gateway"], {
      cwd: REPO_ROOT,
      encoding: "utf8",
      timeout: 60_000,
    });
    expect(compose.status).toBe(0);
    const metricsText = async () =>
      (await fetch(`${gatewayUrl}/metrics`, { signal: AbortSignal.timeout(HTTP_TIMEOUT_MS) })).text();
    const reloaded = await eventually("the reload to be counted", metricsText, (text) =>
      /^gateway_config_reloads_total\{result="success"\} 1$/m.test(text),
    );
    const hash = createHash("sha256")
      .update(readFileSync(join(REPO_ROOT, "config/compose.yaml")))
      .digest("hex")
      .slice(0, 12);
    expect(reloaded).toContain(`gateway_config_info{hash="${hash}"} 1`);
    const answer = await chat(gatewayUrl, { model: "remote", messages: [{ role: "user", content: "Hi" }] });
    expect(answer.status).toBe(200);
  });

  it("serves /health and /ready on the published port", async () => {
    expect(await request(`${gatewayUrl}/health`)).toMatchObject({ status: 200, body: { status: "ok" } });
    expect(await request(`${gatewayUrl}/ready`)).toMatchObject({ status: 200, body: { status: "ready" } });
  });

  it("publishes the gateway only, on 127.0.0.1, and runs both services under init with a restart policy", async () => {
    const client = await getContainerRuntimeClient();
    const inspect = async (service: string) =>
      client.container.inspect(client.container.getById(requireEnvironment().getContainer(`${service}-1`).getId()));
    const gateway = await inspect("gateway");
    const mockRemote = await inspect("mock-remote");

    expect(gateway.HostConfig.PortBindings).toEqual({ "8080/tcp": [{ HostIp: "127.0.0.1", HostPort: String(port) }] });
    expect(Object.keys(mockRemote.HostConfig.PortBindings ?? {})).toEqual([]);
    for (const container of [gateway, mockRemote]) {
      expect(container.HostConfig.Init).toBe(true);
      expect(container.HostConfig.RestartPolicy?.Name).toBe("unless-stopped");
      expect(container.Config.User).toBe("node");
      expect(container.State.Health?.Status).toBe("healthy");
    }
    expect(gateway.Config.Env).toContain("CONFIG_FILE=config/compose.yaml");
  });
});

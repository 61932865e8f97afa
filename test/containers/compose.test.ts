/**
 * The real docker-compose.yml, brought up as a user brings it up (built, gateway waiting for mock-remote to
 * be healthy), published on 127.0.0.1 at a free port, and checked end to end through that port.
 * Needs Docker with Compose v2; run with TESTCONTAINERS_RYUK_DISABLED=true TESTCONTAINERS_HOST_OVERRIDE=127.0.0.1.
 */
import {
  DockerComposeEnvironment,
  getContainerRuntimeClient,
  type StartedDockerComposeEnvironment,
  Wait,
} from "testcontainers";
import { chat, CONTAINER_TEST_TIMEOUT_MS, freePort, REPO_ROOT, request, THREE_CURLS } from "./support";

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

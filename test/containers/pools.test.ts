/**
 * Backend pools in containers: test/containers/pools/compose.yml runs three mock-remote replicas and one
 * gateway whose `pool` backend finds them by DNS (`discovery: dns` on the service name) and checks their
 * health. The official openai SDK is the client, with its own retries off so every failure is the gateway's.
 * One replica is killed mid-run and started again. Run with TESTCONTAINERS_RYUK_DISABLED=true
 * TESTCONTAINERS_HOST_OVERRIDE=127.0.0.1.
 */
import path from "node:path";
import OpenAI from "openai";
import {
  DockerComposeEnvironment,
  getContainerRuntimeClient,
  type StartedDockerComposeEnvironment,
  Wait,
} from "testcontainers";
import { eventually } from "../support/eventually";
import { parseExposition, type Sample, select, total } from "../support/exposition";
import { CONTAINER_TEST_TIMEOUT_MS, freePort, REPO_ROOT } from "./support";

jest.setTimeout(CONTAINER_TEST_TIMEOUT_MS);

const REPLICAS = ["mock-remote-1", "mock-remote-2", "mock-remote-3"];

let environment: StartedDockerComposeEnvironment | undefined;
let gatewayUrl = "";

beforeAll(async () => {
  const port = await freePort();
  let compose = new DockerComposeEnvironment(path.join(REPO_ROOT, "test", "containers", "pools"), "compose.yml")
    .withBuild()
    .withEnvironment({ GATEWAY_PORT: String(port) })
    .withWaitStrategy("gateway-1", Wait.forHealthCheck())
    .withStartupTimeout(120_000);
  for (const replica of REPLICAS) compose = compose.withWaitStrategy(replica, Wait.forHealthCheck());
  environment = await compose.up();
  gatewayUrl = `http://127.0.0.1:${port}`;
});

afterAll(async () => {
  await environment?.down({ removeVolumes: true });
});

async function metrics(): Promise<Sample[]> {
  const response = await fetch(`${gatewayUrl}/metrics`, { signal: AbortSignal.timeout(10_000) });
  return parseExposition(await response.text());
}

/** Requests served by each target (by its discovered address), from the gateway's own metrics. */
async function servedByTarget(): Promise<Map<string, number>> {
  const served = new Map<string, number>();
  for (const sample of select(await metrics(), "gateway_target_requests_total", { backend: "pool", code: "200" }))
    served.set(String(sample.labels.target), sample.value);
  return served;
}

async function upTargets(): Promise<string[]> {
  return select(await metrics(), "gateway_target_up", { backend: "pool" })
    .filter((sample) => sample.value === 1)
    .map((sample) => String(sample.labels.target))
    .sort();
}

async function replica(name: string) {
  const client = await getContainerRuntimeClient();
  if (environment === undefined) throw new Error("the compose environment did not start");
  return client.container.getById(environment.getContainer(name).getId());
}

/** `count` calls through the SDK from `concurrency` clients; before call `killAt`, `beforeCall` runs. */
async function load(
  count: number,
  concurrency: number,
  beforeCall?: { at: number; run: () => Promise<void> },
): Promise<{ errors: number[]; sent: number }> {
  const openai = new OpenAI({ baseURL: `${gatewayUrl}/v1`, apiKey: "unused", maxRetries: 0, timeout: 30_000 });
  const errors: number[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < count) {
        const index = next++;
        if (beforeCall !== undefined && index === beforeCall.at) await beforeCall.run();
        try {
          if (index % 2 === 0) {
            const completion = await openai.chat.completions.create({
              model: "pool",
              messages: [{ role: "user", content: `question ${index}` }],
            });
            if (completion.choices[0]?.message.content === undefined) errors.push(index);
          } else {
            const stream = await openai.chat.completions.create({
              model: "pool",
              messages: [{ role: "user", content: `question ${index}` }],
              stream: true,
            });
            let text = "";
            for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? "";
            if (text === "") errors.push(index);
          }
        } catch {
          errors.push(index);
        }
      }
    }),
  );
  return { errors, sent: count };
}

describe("a backend over three replicas found by DNS", () => {
  it("finds every replica and spreads the requests over them", async () => {
    await eventually("three targets discovered", upTargets, (up) => up.length === 3, {
      timeoutMs: 15_000,
      intervalMs: 250,
    });
    const { errors } = await load(300, 6);
    expect(errors).toEqual([]);
    const served = [...(await servedByTarget()).values()];
    expect(served).toHaveLength(3);
    for (const count of served) expect(count).toBeGreaterThan(50);
  });

  it("a replica killed mid-run: errors only for what was on it, it leaves the pool, and rejoins when started again", async () => {
    const victim = await replica("mock-remote-2");
    const before = new Set(await upTargets());
    let inFlightAtKill = 0;
    const { errors } = await load(600, 6, {
      at: 200,
      run: async () => {
        inFlightAtKill = total(await metrics(), "gateway_target_in_flight", { backend: "pool" });
        await victim.kill();
      },
    });
    // At most the calls already on the killed replica (streams it had started); the rest went elsewhere.
    expect(errors.length).toBeLessThanOrEqual(inFlightAtKill);
    expect(errors.filter((index) => index > 200 + 12)).toEqual([]);
    const remaining = await eventually("the killed replica out of the pool", upTargets, (up) => up.length === 2, {
      timeoutMs: 15_000,
      intervalMs: 250,
    });
    const gone = [...before].filter((target) => !remaining.includes(target));
    expect(gone).toHaveLength(1);
    const servedBefore = await servedByTarget();
    expect((await load(60, 3)).errors).toEqual([]);
    const servedAfter = await servedByTarget();
    // Nothing more was sent to the dead replica's address.
    expect(servedAfter.get(gone[0] ?? "") ?? 0).toBe(servedBefore.get(gone[0] ?? "") ?? 0);

    await victim.start();
    await eventually("the replica back in the pool", upTargets, (up) => up.length === 3, {
      timeoutMs: 30_000,
      intervalMs: 250,
    });
    const rejoined = (await upTargets()).filter((target) => !remaining.includes(target));
    expect(rejoined).toHaveLength(1);
    const servedRejoined = (await servedByTarget()).get(rejoined[0] ?? "") ?? 0;
    expect((await load(90, 3)).errors).toEqual([]);
    expect((await servedByTarget()).get(rejoined[0] ?? "") ?? 0).toBeGreaterThan(servedRejoined);
  });
});

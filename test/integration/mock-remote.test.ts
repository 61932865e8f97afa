import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { eventually } from "../support/eventually";
import { freePort } from "../support/ports";
import { MOCK_MAIN, ROOT } from "../support/process";

/** The built mock-remote as compose and the pool tests run it: its replica knobs come from the environment. */

const started: ChildProcess[] = [];

afterEach(() => {
  for (const child of started.splice(0)) child.kill("SIGKILL");
});

async function startMockProcess(env: Record<string, string>): Promise<string> {
  const port = await freePort();
  const child = spawn(process.execPath, [MOCK_MAIN], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? "", HOST: "127.0.0.1", PORT: String(port), ...env },
  });
  started.push(child);
  let output = "";
  child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()));
  await eventually(
    "mock-remote to listen",
    async () => output,
    (text) => text.includes('"mock-remote listening"') || child.exitCode !== null,
  );
  if (child.exitCode !== null) throw new Error(`mock-remote exited:\n${output}`);
  return `http://127.0.0.1:${port}`;
}

describe("the mock-remote process", () => {
  it("takes its name, latency and health status from MOCK_INSTANCE, MOCK_LATENCY_MS and MOCK_HEALTH_STATUS", async () => {
    const url = await startMockProcess({ MOCK_INSTANCE: "pool-b", MOCK_LATENCY_MS: "300", MOCK_HEALTH_STATUS: "503" });

    const health = await fetch(`${url}/health`);
    expect(health.status).toBe(503);
    expect(health.headers.get("x-mock-instance")).toBe("pool-b");
    expect(await health.json()).toEqual({ status: "failing" });

    const began = performance.now();
    const answer = await fetch(`${url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "mock-model", messages: [{ role: "user", content: "hi" }] }),
    });
    const body = (await answer.json()) as Record<string, unknown>;
    expect(performance.now() - began).toBeGreaterThanOrEqual(295);
    expect(answer.headers.get("x-mock-instance")).toBe("pool-b");
    expect(body.system_fingerprint).toBe("pool-b");

    const healed = await fetch(`${url}/mock/health`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ status: 200 }),
    });
    expect(await healed.json()).toEqual({ status: 200, checks: 1 });
    expect((await fetch(`${url}/health`)).status).toBe(200);
  });

  it("refuses a bad MOCK_HEALTH_STATUS with exit code 1 and one line", () => {
    const result = spawnSync(process.execPath, [MOCK_MAIN], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? "", HOST: "127.0.0.1", PORT: "0", MOCK_HEALTH_STATUS: "100" },
      encoding: "utf8",
      timeout: 10000,
    });
    expect(result.status).toBe(1);
    expect(result.stdout).toBe("");
    expect(result.stderr).toBe("mock-remote: MOCK_HEALTH_STATUS must be a whole number from 200 to 599\n");
  });
});

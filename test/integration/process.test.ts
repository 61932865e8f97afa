import { execFile, spawnSync } from "node:child_process";
import { connect, type Socket } from "node:net";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { GATEWAY_MAIN, ROOT, startGatewayProcess, workDir } from "../support/process";
import { chat, type RunningMock, startMock, twoBackendConfig, userMessage } from "../support/servers";

/** Runs smoke.sh without blocking this process: the mock-remote it reaches lives in this event loop. */
function smoke(url: string): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolveRun) => {
    execFile(
      "bash",
      [join(ROOT, "test/smoke.sh"), url],
      { encoding: "utf8", timeout: 30000 },
      (error, stdout, stderr) => {
        resolveRun({ status: error === null ? 0 : typeof error.code === "number" ? error.code : null, stdout, stderr });
      },
    );
  });
}

let mock: RunningMock;

beforeAll(async () => {
  mock = await startMock();
});

afterAll(async () => {
  await mock.close();
});

describe("the gateway process", () => {
  it("refuses a bad config with exit code 1 and one line naming the file and key", () => {
    const dir = workDir(twoBackendConfig("localhost:8081"));
    const result = spawnSync(process.execPath, [GATEWAY_MAIN], {
      cwd: dir,
      env: { PATH: process.env.PATH ?? "", CONFIG_FILE: "config.yaml" },
      encoding: "utf8",
      timeout: 10000,
    });
    expect(result.status).toBe(1);
    expect(result.stdout).toBe("");
    expect(result.stderr).toBe("gateway: config error: config.yaml: backends[1].url: must be an http(s) URL\n");
  });

  it("refuses a bad setting the same way", () => {
    const result = spawnSync(process.execPath, [GATEWAY_MAIN], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? "", PORT: "eighty" },
      encoding: "utf8",
      timeout: 10000,
    });
    expect(result.status).toBe(1);
    expect(result.stderr).toBe("gateway: config error: PORT: must be a whole number from 0 to 65535\n");
  });

  it("reads settings from .env, with the real environment winning", async () => {
    const dir = workDir(twoBackendConfig(mock.url));
    writeFileSync(join(dir, ".env"), "CONFIG_FILE=config.yaml\nLOG_LEVEL=warn\nHOST=0.0.0.0\n");
    const started = await startGatewayProcess(dir, { HOST: "127.0.0.1", LOG_LEVEL: "info" });
    try {
      expect(started.output()).toContain('"config":"config.yaml"');
      expect(started.output()).toContain('"host":"127.0.0.1"');
      expect((await chat(started.url, { messages: userMessage("x") })).status).toBe(200);
    } finally {
      started.child.kill("SIGKILL");
    }
  });

  it("passes the README's smoke test (test/smoke.sh)", async () => {
    const started = await startGatewayProcess(workDir(twoBackendConfig(mock.url)), { CONFIG_FILE: "config.yaml" });
    try {
      const run = await smoke(started.url);
      expect(run.stderr).toBe("");
      expect(run.stdout).toContain("smoke: all 3 checks passed");
      expect(run.status).toBe(0);
    } finally {
      started.child.kill("SIGKILL");
    }
  });

  it("smoke test fails loudly against a wrong gateway", async () => {
    // A gateway whose default backend is the remote one answers the third curl wrongly.
    const config = twoBackendConfig(mock.url).replace("default_backend: local", "default_backend: remote");
    const started = await startGatewayProcess(workDir(config), { CONFIG_FILE: "config.yaml" });
    try {
      const run = await smoke(started.url);
      expect(run.status).toBe(1);
      expect(run.stderr).toContain("FAIL no model -> default backend");
    } finally {
      started.child.kill("SIGKILL");
    }
  });

  it("on SIGTERM finishes the request in flight, refuses new connections, and exits 0", async () => {
    const started = await startGatewayProcess(workDir(twoBackendConfig(mock.url)), {
      CONFIG_FILE: "config.yaml",
      DRAIN_DELAY: "0",
    });
    const inFlight = chat(started.url, { model: "remote", messages: userMessage("slow"), mock: { delay_ms: 1000 } });
    for (let i = 0; i < 100 && !mock.seen.some((r) => JSON.stringify(r.body).includes('"slow"')); i++)
      await new Promise((r) => setTimeout(r, 10));
    started.child.kill("SIGTERM");
    await new Promise((r) => setTimeout(r, 100));
    await expect(fetch(`${started.url}/health`)).rejects.toThrow();
    const answer = await inFlight;
    expect(answer.status).toBe(200);
    expect(answer.body).toMatchObject({ choices: [{ message: { content: "Remote: slow" } }] });
    expect(await started.exited()).toBe(0);
    expect(started.output()).toContain('"message":"stopped"');
  });

  it("on SIGTERM gives up on a stuck request after SHUTDOWN_TIMEOUT and still exits 0", async () => {
    const started = await startGatewayProcess(workDir(twoBackendConfig(mock.url)), {
      CONFIG_FILE: "config.yaml",
      SHUTDOWN_TIMEOUT: "1",
      DRAIN_DELAY: "0",
    });
    const stuck = chat(started.url, { model: "remote", messages: userMessage("stuck"), mock: { fault: "hang" } });
    stuck.catch(() => undefined);
    for (let i = 0; i < 100 && !mock.seen.some((r) => JSON.stringify(r.body).includes('"stuck"')); i++)
      await new Promise((r) => setTimeout(r, 10));
    const before = performance.now();
    started.child.kill("SIGTERM");
    expect(await started.exited()).toBe(0);
    expect(performance.now() - before).toBeLessThan(8000);
    await expect(stuck).rejects.toThrow();
    expect(started.output()).toContain("shutdown timeout reached");
  });

  it("on SIGTERM keeps serving for DRAIN_DELAY with /ready at 503, then closes the listener and exits 0", async () => {
    const started = await startGatewayProcess(workDir(twoBackendConfig(mock.url)), {
      CONFIG_FILE: "config.yaml",
      DRAIN_DELAY: "2",
    });
    expect((await fetch(`${started.url}/ready`)).status).toBe(200);
    started.child.kill("SIGTERM");
    for (let i = 0; i < 100 && !started.output().includes("draining"); i++) await new Promise((r) => setTimeout(r, 10));
    // New connections are still accepted: an orchestrator sees "not ready" instead of "connection refused".
    const ready = await fetch(`${started.url}/ready`);
    expect(ready.status).toBe(503);
    expect(await ready.json()).toEqual({ status: "shutting_down" });
    const answer = await chat(started.url, { messages: userMessage("during the drain") });
    expect(answer.status).toBe(200);
    expect(answer.headers.get("connection")).toBe("close");
    expect(await started.exited()).toBe(0);
    await expect(fetch(`${started.url}/health`)).rejects.toThrow();
    const output = started.output();
    expect(output.indexOf("draining")).toBeLessThan(output.indexOf("shutting down: no new connections"));
  });
});

/** A raw connection: what it was sent back, and when the gateway closed it. */
function rawSocket(url: string, first?: string): { socket: Socket; reply(): string; closed: Promise<void> } {
  const port = Number(new URL(url).port);
  const socket = connect(port, "127.0.0.1", () => {
    if (first !== undefined) socket.write(first);
  });
  let text = "";
  socket.on("data", (chunk: Buffer) => (text += chunk.toString()));
  socket.on("error", () => undefined);
  const closed = new Promise<void>((resolveClose) => socket.once("close", () => resolveClose()));
  return { socket, reply: () => text, closed };
}

describe("slow and greedy clients", () => {
  it("answers 408 to a request whose headers do not arrive within HEADERS_TIMEOUT, and closes an idle connection", async () => {
    const started = await startGatewayProcess(workDir(twoBackendConfig(mock.url)), {
      CONFIG_FILE: "config.yaml",
      HEADERS_TIMEOUT: "1",
    });
    try {
      const partial = rawSocket(started.url, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n");
      const idle = rawSocket(started.url);
      // Bounded by jest's timeout: without HEADERS_TIMEOUT Node waits 60 s for headers.
      await Promise.all([partial.closed, idle.closed]);
      expect(partial.reply()).toMatch(/^HTTP\/1\.1 408 /);
      expect(JSON.parse(partial.reply().slice(partial.reply().indexOf("\r\n\r\n") + 4))).toMatchObject({
        error: { code: "request_timeout" },
      });
      expect((await chat(started.url, { messages: userMessage("still serving") })).status).toBe(200);
    } finally {
      started.child.kill("SIGKILL");
    }
  });

  it("closes connections past MAX_CONNECTIONS at once and serves again once one is free", async () => {
    const started = await startGatewayProcess(workDir(twoBackendConfig(mock.url)), {
      CONFIG_FILE: "config.yaml",
      MAX_CONNECTIONS: "3",
    });
    const held = [1, 2, 3].map(() => rawSocket(started.url, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"));
    try {
      await new Promise((r) => setTimeout(r, 200));
      const extra = rawSocket(started.url, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
      await extra.closed;
      expect(extra.reply()).toBe("");
      held[0]?.socket.destroy();
      await held[0]?.closed;
      await new Promise((r) => setTimeout(r, 100));
      expect((await chat(started.url, { messages: userMessage("room again") })).status).toBe(200);
      expect(started.output()).toContain("connection limit reached");
    } finally {
      for (const connection of held) connection.socket.destroy();
      started.child.kill("SIGKILL");
    }
  });
});

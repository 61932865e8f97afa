import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { rmSync } from "node:fs";
import { createServer, request, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { eventually } from "../support/eventually";
import { parseExposition, select, total } from "../support/exposition";
import { GATEWAY_MAIN, workDir } from "../support/process";

/** These tests run the built program with WORKERS=2, as users do (`make build` first; `make test` does it). */
const ECHO_CONFIG = "default_backend: local\nbackends:\n  - name: local\n    type: echo\n";

interface Cluster {
  readonly child: ChildProcess;
  readonly port: number;
  /** stdout and stderr as they arrived. */
  output(): string;
  /** stdout alone: the JSON log lines of the primary and both workers. */
  stdout(): string;
  exited(): Promise<number | null>;
}

/** Config directories made by these tests, removed when they are done. */
const dirs: string[] = [];

function clusterDir(configYaml: string): string {
  const dir = workDir(configYaml, "gateway-cluster-");
  dirs.push(dir);
  return dir;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolveSleep) => setTimeout(resolveSleep, ms));
}

/** Lines of the form `{"message":"gateway listening",...}`: one per worker that is up. */
function listening(output: string): Record<string, unknown>[] {
  return output
    .split("\n")
    .filter((line) => line.includes('"gateway listening"'))
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

function waitFor(condition: () => boolean, what: string, output: () => string): Promise<boolean> {
  return eventually(
    what,
    async () => condition(),
    (holds) => holds,
    { timeoutMs: 7500, intervalMs: 25, context: output },
  );
}

/** The built gateway with WORKERS=2 on an ephemeral port, once both workers listen (bounded wait). */
async function startCluster(configYaml = ECHO_CONFIG): Promise<Cluster> {
  const dir = clusterDir(configYaml);
  const child = spawn(process.execPath, [GATEWAY_MAIN], {
    cwd: dir,
    env: {
      PATH: process.env.PATH ?? "",
      PORT: "0",
      HOST: "127.0.0.1",
      CONFIG_FILE: "config.yaml",
      WORKERS: "2",
      DRAIN_DELAY: "0",
    },
  });
  let output = "";
  let stdout = "";
  child.stdout.on("data", (chunk: Buffer) => {
    output += chunk.toString();
    stdout += chunk.toString();
  });
  child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()));
  const exit = new Promise<number | null>((resolveExit) => child.once("exit", (code) => resolveExit(code)));
  try {
    await waitFor(
      () => listening(output).length >= 2 || child.exitCode !== null,
      "two workers to listen",
      () => output,
    );
  } catch (error) {
    child.kill("SIGKILL");
    throw error;
  }
  const port = Number(listening(output)[0]?.port);
  return { child, port, output: () => output, stdout: () => stdout, exited: () => exit };
}

/** One request on a connection of its own, so that node:cluster hands it to the next worker in turn. */
function send(port: number, method: string, path: string, body?: string): Promise<{ status: number; text: string }> {
  return new Promise((resolveSend, reject) => {
    const req = request(
      {
        host: "127.0.0.1",
        port,
        method,
        path,
        agent: false,
        headers: body === undefined ? {} : { "content-type": "application/json" },
      },
      (res) => {
        let text = "";
        res.on("data", (chunk: Buffer) => (text += chunk.toString()));
        res.on("end", () => resolveSend({ status: res.statusCode ?? 0, text }));
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

const CHAT = JSON.stringify({ messages: [{ role: "user", content: "Hello world" }] });

async function countedRequests(port: number): Promise<number> {
  const samples = parseExposition((await send(port, "GET", "/metrics")).text);
  return select(samples, "gateway_requests_total", { backend: "local", code: "200" }).reduce(
    (sum, sample) => sum + sample.value,
    0,
  );
}

/**
 * Requests and request-duration observations of backend `local` in the summed scrape, once two scrapes in a
 * row agree (a request is counted when its response closes, a moment after the client has read it).
 */
async function settledCounts(port: number): Promise<{ requests: number; durations: number }> {
  let previous = "";
  for (let attempt = 0; attempt < 40; attempt++) {
    const samples = parseExposition((await send(port, "GET", "/metrics")).text);
    const counts = {
      requests: total(samples, "gateway_requests_total", { backend: "local" }),
      durations: total(samples, "gateway_request_duration_seconds_count", { backend: "local" }),
    };
    if (counts.requests === counts.durations && JSON.stringify(counts) === previous) return counts;
    previous = JSON.stringify(counts);
    await sleep(25);
  }
  throw new Error(`/metrics did not settle: ${previous}`);
}

afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

describe("WORKERS=2", () => {
  let gateway: Cluster;

  beforeAll(async () => {
    gateway = await startCluster();
  });

  afterAll(() => {
    if (gateway.child.exitCode === null) gateway.child.kill("SIGKILL");
  });

  it("starts two workers on one port, each saying which it is", () => {
    const workers = listening(gateway.output());
    expect(workers).toHaveLength(2);
    expect(new Set(workers.map((line) => line.port)).size).toBe(1);
    expect(new Set(workers.map((line) => line.pid)).size).toBe(2);
  });

  it("answers chat completions", async () => {
    const answer = await send(gateway.port, "POST", "/v1/chat/completions", CHAT);
    expect(answer.status).toBe(200);
    expect(JSON.parse(answer.text)).toMatchObject({ choices: [{ message: { content: "Echo: Hello world" } }] });
  });

  it("serves /metrics summed over the workers, whichever worker answers the scrape", async () => {
    const before = await countedRequests(gateway.port);
    // New connections alternate between the workers, so each serves about half of these.
    for (let i = 0; i < 10; i++)
      expect((await send(gateway.port, "POST", "/v1/chat/completions", CHAT)).status).toBe(200);
    // A request is counted when its response closes, a moment after the client has read it: retry briefly.
    let counts: number[] = [];
    for (let attempt = 0; attempt < 40; attempt++) {
      counts = [await countedRequests(gateway.port), await countedRequests(gateway.port)];
      if (counts.every((count) => count === before + 10)) break;
      await sleep(25);
    }
    expect(counts).toEqual([before + 10, before + 10]);
  });

  it("keeps 1/0 gauges 1 in the summed scrape: build info and backend up are not counts of workers", async () => {
    const samples = parseExposition((await send(gateway.port, "GET", "/metrics")).text);
    expect(select(samples, "gateway_build_info").map((sample) => sample.value)).toEqual([1]);
    expect(select(samples, "gateway_backend_up", { backend: "local" }).map((sample) => sample.value)).toEqual([1]);
  });

  it("replaces a worker that dies, and keeps its counts: summed counters never go backwards", async () => {
    for (let i = 0; i < 10; i++)
      expect((await send(gateway.port, "POST", "/v1/chat/completions", CHAT)).status).toBe(200);
    const before = await settledCounts(gateway.port);
    // Ten requests on fresh connections alternate between the two workers: the victim served some of them.
    expect(before.requests).toBeGreaterThanOrEqual(10);

    const victim = Number(listening(gateway.output())[0]?.pid);
    process.kill(victim, "SIGKILL");
    await waitFor(
      () => listening(gateway.output()).length >= 3,
      "a replacement worker",
      () => gateway.output(),
    );
    expect(gateway.output()).toContain('"message":"worker died; starting another"');

    // Nothing was served since `before`: the dead worker's last counts stay in the sum, once.
    const after = parseExposition((await send(gateway.port, "GET", "/metrics")).text);
    expect(total(after, "gateway_requests_total", { backend: "local" })).toBe(before.requests);
    expect(total(after, "gateway_request_duration_seconds_count", { backend: "local" })).toBe(before.durations);
    // Its gauges went with it: these say 1 from the two live workers, not 2.
    expect(select(after, "gateway_build_info").map((sample) => sample.value)).toEqual([1]);
    expect(select(after, "gateway_backend_up", { backend: "local" }).map((sample) => sample.value)).toEqual([1]);
    expect(total(after, "gateway_in_flight_requests", { backend: "local" })).toBe(0);

    for (let i = 0; i < 4; i++)
      expect((await send(gateway.port, "POST", "/v1/chat/completions", CHAT)).status).toBe(200);
    expect((await settledCounts(gateway.port)).requests).toBe(before.requests + 4);
  });

  it("on SIGTERM stops every worker and exits 0", async () => {
    gateway.child.kill("SIGTERM");
    expect(await gateway.exited()).toBe(0);
    expect(gateway.output()).toContain('"message":"stopped","service":"gateway","timestamp"');
    expect(gateway.output()).toMatch(/"message":"stopped"[^\n]*"workers":2/);
  });
});

describe("WORKERS=2 logging requests with 14 KB paths", () => {
  let gateway: Cluster;

  beforeAll(async () => {
    gateway = await startCluster();
  });

  afterAll(() => {
    if (gateway.child.exitCode === null) gateway.child.kill("SIGKILL");
  });

  it("writes whole lines: both workers' lines on the shared stdout pipe never interleave", async () => {
    const requests = 400;
    const connections = 16;
    // Over PIPE_BUF (4096 bytes) as written to the log: such a line was written in one piece, not atomically.
    const longPath = (i: number) => `/v1/${String(i).padStart(4, "0")}/${"p".repeat(14000)}`;
    let next = 0;
    const statuses: number[] = [];
    // Each client sends one request at a time, each on a new connection: the two workers take turns.
    const client = async (): Promise<void> => {
      while (next < requests) statuses.push((await send(gateway.port, "GET", longPath(next++))).status);
    };
    // A log reader that falls behind now and then, as shippers do: the pipe fills, both workers block in
    // write(2), and when it drains they race. A write over PIPE_BUF can then be split around the other's.
    const stdout = gateway.child.stdout;
    const slowReader = setInterval(() => (stdout?.isPaused() === true ? stdout.resume() : stdout?.pause()), 20);
    try {
      await Promise.all(Array.from({ length: connections }, client));
    } finally {
      clearInterval(slowReader);
      stdout?.resume();
    }
    expect(statuses).toHaveLength(requests);
    // A line is logged when its response closes, a moment after the client has read it: wait briefly.
    const logged = () => gateway.stdout().split('"message":"request"').length - 1;
    for (let i = 0; i < 200 && logged() < requests; i++) await sleep(25);
    const lines = gateway
      .stdout()
      .split("\n")
      .filter((line) => line !== "");
    const unparsed = lines.filter((line) => {
      try {
        JSON.parse(line);
        return false;
      } catch {
        return true;
      }
    });
    expect(unparsed.map((line) => `${line.slice(0, 80)}… (${line.length} chars)`)).toEqual([]);
    const paths = lines
      .map((line) => JSON.parse(line) as { message?: string; path?: string })
      .filter((line) => line.message === "request");
    expect(paths).toHaveLength(requests);
    for (const { path } of paths) expect(path).toMatch(/^\/v1\/\d{4}\/p+…$/);
  });
});

describe("WORKERS with a bad config", () => {
  it("fails once, in the primary, with the usual one line", () => {
    const dir = clusterDir("default_backend: nowhere\nbackends:\n  - name: local\n    type: echo\n");
    const result = spawnSync(process.execPath, [GATEWAY_MAIN], {
      cwd: dir,
      env: { PATH: process.env.PATH ?? "", CONFIG_FILE: "config.yaml", WORKERS: "2" },
      encoding: "utf8",
      timeout: 10000,
    });
    expect(result.status).toBe(1);
    expect(result.stdout).toBe("");
    expect(result.stderr.split("\n").filter((line) => line !== "")).toHaveLength(1);
    expect(result.stderr).toMatch(/^gateway: config error: config\.yaml: /);
  });
});

describe("WORKERS=2 with per-client limits: counted once for all workers, in the primary", () => {
  it("admits a client's requests per minute across both workers, not per worker", async () => {
    const gateway = await startCluster(`limits:\n  requests_per_minute: 10\n${ECHO_CONFIG}`);
    try {
      // Each on a connection of its own: node:cluster hands them to the two workers in turn.
      const statuses: number[] = [];
      for (let i = 0; i < 30; i++)
        statuses.push((await send(gateway.port, "POST", "/v1/chat/completions", CHAT)).status);
      expect(statuses.filter((status) => status === 200)).toHaveLength(10);
      expect(statuses.filter((status) => status === 429)).toHaveLength(20);
      // Per worker, each would have admitted 10 of its 15. The summed metrics agree with what the client saw.
      const samples = parseExposition((await send(gateway.port, "GET", "/metrics")).text);
      expect(total(samples, "gateway_requests_total", { code: "429" })).toBe(20);
    } finally {
      gateway.child.kill("SIGKILL");
    }
  });

  it("holds a client's concurrent requests across both workers, and gives the slots back when they end", async () => {
    // An upstream that holds every request until told to answer.
    const held: ServerResponse[] = [];
    const upstream: Server = createServer((req, res) => {
      req.resume();
      held.push(res);
    });
    await new Promise<void>((resolveListen) => upstream.listen(0, "127.0.0.1", resolveListen));
    const { port: upstreamPort } = upstream.address() as AddressInfo;
    const answer = (res: ServerResponse) => {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ choices: [{ message: { role: "assistant", content: "ok" }, finish_reason: "stop" }] }));
    };
    const gateway = await startCluster(
      `limits:\n  concurrent_requests: 2\ndefault_backend: slow\nbackends:\n  - name: slow\n    type: http\n    url: http://127.0.0.1:${upstreamPort}\n`,
    );
    try {
      const first = [
        send(gateway.port, "POST", "/v1/chat/completions", CHAT),
        send(gateway.port, "POST", "/v1/chat/completions", CHAT),
      ];
      await eventually(
        "two requests held upstream",
        async () => held.length,
        (count) => count === 2,
        {
          timeoutMs: 5000,
          intervalMs: 20,
        },
      );
      // Two more, on new connections (one to each worker): each worker alone would still have a free slot.
      const refused = await Promise.all([
        send(gateway.port, "POST", "/v1/chat/completions", CHAT),
        send(gateway.port, "POST", "/v1/chat/completions", CHAT),
      ]);
      expect(refused.map((result) => result.status)).toEqual([503, 503]);
      expect(refused[0]?.text).toContain("requests in flight");
      held.splice(0).forEach(answer);
      expect((await Promise.all(first)).map((result) => result.status)).toEqual([200, 200]);
      // The slots came back: the next one is admitted.
      const next = send(gateway.port, "POST", "/v1/chat/completions", CHAT);
      await eventually(
        "the next request held upstream",
        async () => held.length,
        (count) => count === 1,
        {
          timeoutMs: 5000,
          intervalMs: 20,
        },
      );
      held.splice(0).forEach(answer);
      expect((await next).status).toBe(200);
    } finally {
      gateway.child.kill("SIGKILL");
      held.splice(0).forEach((res) => res.destroy());
      await new Promise((resolveClose) => upstream.close(resolveClose));
    }
  });
});

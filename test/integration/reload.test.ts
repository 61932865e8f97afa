import { createHash } from "node:crypto";
import { request as httpRequest } from "node:http";
import { mkdirSync, renameSync, symlinkSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { eventually } from "../support/eventually";
import { total } from "../support/exposition";
import { scrape } from "../support/metrics";
import { type Started, startGatewayProcess, workDir } from "../support/process";
import { type RunningMock, startMock } from "../support/servers";

/**
 * Config reload (SIGHUP, CONFIG_WATCH) in the built gateway, run as users run it, under traffic: a real
 * mock-remote upstream, plain and streamed requests through the whole run.
 */

jest.setTimeout(90_000);

let mock: RunningMock;
const running: Started[] = [];

beforeAll(async () => {
  mock = await startMock();
});

afterEach(() => {
  for (const gateway of running.splice(0)) gateway.child.kill("SIGKILL");
});

afterAll(async () => {
  await mock.close();
});

/** Config A: default `alpha`, and `only-a`, which B drops; `remote` is the same in both (so it is kept). */
function configA(): string {
  return `default_backend: alpha
backends:
  - name: alpha
    type: echo
  - name: remote
    type: http
    url: ${mock.url}
    timeout: 10
  - name: only-a
    type: http
    url: ${mock.url}
    timeout: 10
`;
}

/** Config B: default `beta`, and `only-b`, which A drops. */
function configB(): string {
  return `default_backend: beta
backends:
  - name: beta
    type: echo
  - name: remote
    type: http
    url: ${mock.url}
    timeout: 10
  - name: only-b
    type: http
    url: ${mock.url}
    timeout: 10
`;
}

const hashOf = (text: string) => createHash("sha256").update(text).digest("hex").slice(0, 12);

async function start(configYaml: string, env: Record<string, string> = {}): Promise<{ gateway: Started; dir: string }> {
  const dir = workDir(configYaml, "gateway-reload-");
  const gateway = await startGatewayProcess(dir, { CONFIG_FILE: "config.yaml", DRAIN_DELAY: "0", ...env });
  running.push(gateway);
  return { gateway, dir };
}

async function configInfo(url: string): Promise<Map<string, number>> {
  const samples = await scrape(url);
  return new Map(
    samples
      .filter((sample) => sample.name === "gateway_config_info")
      .map((sample) => [String(sample.labels.hash), sample.value]),
  );
}

/** Which backends may answer a request for `model`: its own in whichever config it arrived under, else that config's default. */
const ALLOWED: Record<string, readonly string[]> = {
  remote: ["remote"],
  "only-a": ["only-a", "beta"],
  "only-b": ["only-b", "alpha"],
};

interface Outcome {
  readonly model: string;
  readonly stream: boolean;
  readonly status: number;
  readonly backend: string | null;
  /** For a stream: it ended with [DONE] and carried no error event. */
  readonly whole: boolean;
}

/** One request; streams of several chunks, spread out, so many are open across each reload. */
async function ask(url: string, model: string, stream: boolean): Promise<Outcome> {
  try {
    const response = await fetch(`${url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        model,
        stream,
        messages: [{ role: "user", content: "one two three four five" }],
        mock: { chunk_delay_ms: 15, delay_ms: 5 },
      }),
      signal: AbortSignal.timeout(20_000),
    });
    const text = await response.text();
    const whole = !stream || (text.trimEnd().endsWith("data: [DONE]") && !text.includes('"error"'));
    return { model, stream, status: response.status, backend: response.headers.get("x-gateway-backend"), whole };
  } catch {
    return { model, stream, status: 0, backend: null, whole: false };
  }
}

describe("config reload", () => {
  it("100 reloads between two configs under plain and streamed traffic: nothing fails, nothing is cut", async () => {
    const { gateway, dir } = await start(configA());
    const file = join(dir, "config.yaml");
    const outcomes: Outcome[] = [];
    let loading = true;
    const models = ["remote", "only-a", "only-b"];
    // A bounded closed loop per client: each sends until the reloads are over (at most 20,000 requests each).
    const clients = Array.from({ length: 24 }, async (_unused, client) => {
      for (let i = 0; loading && i < 20_000; i++)
        outcomes.push(await ask(gateway.url, models[(client + i) % 3] ?? "remote", (client + i) % 2 === 0));
    });
    const startedAt = performance.now();
    for (let reload = 0; reload < 100; reload++) {
      writeFileSync(file, reload % 2 === 0 ? configB() : configA());
      gateway.child.kill("SIGHUP");
      await new Promise((resolve) => setTimeout(resolve, 100));
      if (reload === 50) {
        // An invalid file in the middle: nothing changes for the traffic.
        writeFileSync(file, `${configA()}    retries: lots\n`);
        gateway.child.kill("SIGHUP");
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
    loading = false;
    await Promise.all(clients);
    const seconds = (performance.now() - startedAt) / 1000;

    expect(gateway.child.exitCode).toBeNull();
    const failed = outcomes.filter((outcome) => outcome.status !== 200 || !outcome.whole);
    expect(failed).toEqual([]);
    const misrouted = outcomes.filter((outcome) => !(ALLOWED[outcome.model] ?? []).includes(outcome.backend ?? ""));
    expect(misrouted).toEqual([]);
    // The traffic really crossed the reloads: requests for both configs' own backends were answered by them.
    for (const backend of ["only-a", "only-b", "alpha", "beta"])
      expect(outcomes.some((outcome) => outcome.backend === backend)).toBe(true);
    expect(outcomes.filter((outcome) => outcome.stream).length).toBeGreaterThan(100);

    const samples = await scrape(gateway.url);
    expect(total(samples, "gateway_config_reloads_total", { result: "success" })).toBe(100);
    expect(total(samples, "gateway_config_reloads_total", { result: "failure" })).toBe(1);
    // The last reload wrote A.
    expect([...(await configInfo(gateway.url))]).toEqual([[hashOf(configA()), 1]]);
    expect(gateway.output()).toContain('"message":"config reload failed: the config in force stays"');
    expect(gateway.output()).toMatch(/config\.yaml: backends\[2\]\.retries/);
    // Backends a config dropped are closed once the requests that used them are over.
    expect(gateway.output()).toContain('"message":"backends the config dropped are closed"');
    // For the note: the load's rate (the target is 500 requests per second).
    console.info(`reload test: ${outcomes.length} requests in ${seconds.toFixed(1)} s`);
  });

  it("keeps the backends whose settings did not change, and the counters of keys whose limits did not change", async () => {
    const keyed = (config: string, limit: number) => `${config}auth:
  keys:
    - name: steady
      key_env: STEADY_KEY
      limits: {requests_per_minute: 3}
    - name: edited
      key_env: EDITED_KEY
      limits: {requests_per_minute: ${limit}}
`;
    const env = { STEADY_KEY: "gw-steady-key-0123456789abcdef", EDITED_KEY: "gw-edited-key-0123456789abcdef" };
    const { gateway, dir } = await start(keyed(configA(), 3), env);
    const call = (key: string) =>
      fetch(`${gateway.url}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${key}` },
        body: JSON.stringify({ model: "alpha", messages: [{ role: "user", content: "hi" }] }),
      }).then((response) => response.status);
    for (let i = 0; i < 3; i++) {
      expect(await call(env.STEADY_KEY)).toBe(200);
      expect(await call(env.EDITED_KEY)).toBe(200);
    }
    writeFileSync(join(dir, "config.yaml"), keyed(configA(), 4));
    gateway.child.kill("SIGHUP");
    await eventually(
      "the reload",
      async () => gateway.output(),
      (text) => text.includes('"message":"config reloaded"'),
    );
    // steady's limit did not change: its three requests of this minute still count. edited's did: it starts afresh.
    expect(await call(env.STEADY_KEY)).toBe(429);
    expect(await call(env.EDITED_KEY)).toBe(200);
    const reloaded = gateway
      .output()
      .split("\n")
      .find((line) => line.includes('"message":"config reloaded"'));
    expect(JSON.parse(reloaded ?? "{}")).toMatchObject({ kept: ["alpha", "remote", "only-a"] });
  });

  it("a request that arrived before a reload is served by its config, even by a backend the reload removed", async () => {
    const { gateway, dir } = await start(configA());
    const body = JSON.stringify({ model: "only-a", messages: [{ role: "user", content: "hi" }] });
    const half = Math.floor(body.length / 2);
    const answer = new Promise<{ status: number; backend: string | undefined; text: string }>((resolveAnswer, fail) => {
      const request = httpRequest(
        `${gateway.url}/v1/chat/completions`,
        { method: "POST", headers: { "content-type": "application/json", "content-length": String(body.length) } },
        (response) => {
          let text = "";
          response.on("data", (chunk: Buffer) => (text += chunk.toString()));
          response.on("end", () =>
            resolveAnswer({
              status: response.statusCode ?? 0,
              backend: response.headers["x-gateway-backend"] as string | undefined,
              text,
            }),
          );
        },
      );
      request.on("error", fail);
      // Half the body now: the request has arrived (under config A) and waits for the rest.
      request.write(body.slice(0, half));
      void (async () => {
        await new Promise((resolve) => setTimeout(resolve, 200));
        writeFileSync(join(dir, "config.yaml"), configB());
        gateway.child.kill("SIGHUP");
        await eventually(
          "the reload",
          async () => gateway.output(),
          (text) => text.includes('"message":"config reloaded"'),
        );
        request.end(body.slice(half));
      })().catch(fail);
    });
    const { status, backend, text } = await answer;
    expect({ status, backend }).toEqual({ status: 200, backend: "only-a" });
    expect(text).toContain("Remote: hi");
    // A new request for only-a now goes to B's default.
    const after = await fetch(`${gateway.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body,
    });
    expect(after.headers.get("x-gateway-backend")).toBe("beta");
  });

  it("shows an added backend's series at 0 at once, and stops showing a removed backend's gauges", async () => {
    const { gateway, dir } = await start(configA());
    const series = (samples: Awaited<ReturnType<typeof scrape>>, name: string, backend: string) =>
      samples.filter((sample) => sample.name === name && sample.labels.backend === backend);
    const before = await scrape(gateway.url);
    expect(series(before, "gateway_backend_up", "only-a")).toHaveLength(1);
    expect(series(before, "gateway_requests_total", "only-b")).toHaveLength(0);
    writeFileSync(join(dir, "config.yaml"), configB());
    gateway.child.kill("SIGHUP");
    await eventually(
      "the reload",
      async () => gateway.output(),
      (text) => text.includes('"message":"config reloaded"'),
    );
    const after = await eventually(
      "only-a's gauges to go",
      () => scrape(gateway.url),
      (samples) => series(samples, "gateway_backend_up", "only-a").length === 0,
    );
    expect(series(after, "gateway_backend_up", "only-b")).toEqual([expect.objectContaining({ value: 1 })]);
    expect(series(after, "gateway_requests_total", "only-b").filter((sample) => sample.labels.code === "502")).toEqual([
      expect.objectContaining({ value: 0 }),
    ]);
  });

  it("under WORKERS=2, SIGHUP to the primary puts every worker on the new config", async () => {
    const { gateway, dir } = await start(configA(), { WORKERS: "2" });
    await eventually(
      "both workers listening",
      async () => gateway.output(),
      (text) => text.split('"message":"gateway listening"').length - 1 === 2,
    );
    expect([...(await configInfo(gateway.url))]).toEqual([[hashOf(configA()), 2]]);
    writeFileSync(join(dir, "config.yaml"), configB());
    const signalled = performance.now();
    gateway.child.kill("SIGHUP");
    await eventually(
      "both workers on config B",
      () => configInfo(gateway.url),
      (info) => info.get(hashOf(configB())) === 2 && info.size === 1,
      { timeoutMs: 10_000, intervalMs: 50 },
    );
    console.info(
      `reload test: both workers on the new config ${Math.round(performance.now() - signalled)} ms after SIGHUP`,
    );
    const response = await fetch(`${gateway.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ messages: [{ role: "user", content: "hi" }] }),
    });
    expect(response.headers.get("x-gateway-backend")).toBe("beta");
    // Many reloads later, no worker has piled up listeners on its channel to the primary (one per reload
    // would pass Node's limit of 10 and warn) and every reload was counted in both workers.
    for (let reload = 0; reload < 12; reload++) {
      gateway.child.kill("SIGHUP");
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    await eventually(
      "13 reloads in each worker",
      () => scrape(gateway.url),
      (samples) => total(samples, "gateway_config_reloads_total", { result: "success" }) === 26,
      { timeoutMs: 10_000, intervalMs: 100 },
    );
    expect(gateway.output()).not.toContain("MaxListenersExceededWarning");
    expect(gateway.child.exitCode).toBeNull();
  });

  it("CONFIG_WATCH follows a ConfigMap-style symlink swap, and ignores a touch that changes nothing", async () => {
    // As Kubernetes mounts a ConfigMap: config.yaml -> ..data/config.yaml, ..data -> a versioned directory.
    const dir = workDir("unused: true\n", "gateway-watch-");
    mkdirSync(join(dir, "v1"));
    writeFileSync(join(dir, "v1", "config.yaml"), configA());
    symlinkSync("v1", join(dir, "..data"));
    symlinkSync(join("..data", "config.yaml"), join(dir, "linked.yaml"));
    const gateway = await startGatewayProcess(dir, {
      CONFIG_FILE: "linked.yaml",
      CONFIG_WATCH: "true",
      DRAIN_DELAY: "0",
    });
    running.push(gateway);
    utimesSync(join(dir, "v1", "config.yaml"), new Date(), new Date());
    mkdirSync(join(dir, "v2"));
    writeFileSync(join(dir, "v2", "config.yaml"), configB());
    symlinkSync("v2", join(dir, "..data_tmp"));
    renameSync(join(dir, "..data_tmp"), join(dir, "..data"));
    await eventually(
      "the watcher to load config B",
      () => configInfo(gateway.url),
      (info) => info.get(hashOf(configB())) === 1,
      { timeoutMs: 10_000, intervalMs: 100 },
    );
    const samples = await scrape(gateway.url);
    // The touch changed nothing: one reload, the swap's.
    expect(total(samples, "gateway_config_reloads_total", { result: "success" })).toBe(1);
  });
});

import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { hostname } from "node:os";
import { createMockApp, type MockOptions } from "../../mock-remote/src/app";

/**
 * The knobs a test of a backend pool needs from each mock-remote replica: its name on every answer, a fixed
 * latency, and a health endpoint that can be made to fail. In-process, on an ephemeral loopback port (this
 * file imports nothing from gateway/, so it tests mock-remote alone).
 */

interface Mock {
  readonly url: string;
  close(): Promise<void>;
}

const running: Mock[] = [];

async function start(options: Partial<MockOptions> = {}): Promise<Mock> {
  const { app } = createMockApp({ defaultDelayMs: 0, modelId: "mock-model", ...options });
  const server = await new Promise<Server>((resolve, reject) => {
    const s = app.listen(0, "127.0.0.1", (error?: Error) => (error === undefined ? resolve(s) : reject(error)));
  });
  const mock = {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
  running.push(mock);
  return mock;
}

afterEach(async () => {
  await Promise.all(running.splice(0).map((mock) => mock.close()));
});

function chat(url: string, body: Record<string, unknown>, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify({ model: "mock-model", messages: [{ role: "user", content: "Hello pool" }], ...body }),
  });
}

function setHealth(url: string, body: string): Promise<Response> {
  return fetch(`${url}/mock/health`, { method: "POST", headers: { "content-type": "application/json" }, body });
}

/** The JSON of each `data:` line of an event stream, `[DONE]` left out. */
function events(text: string): Record<string, unknown>[] {
  return text
    .split("\n")
    .filter((line) => line.startsWith("data: ") && line !== "data: [DONE]")
    .map((line) => JSON.parse(line.slice("data: ".length)) as Record<string, unknown>);
}

describe("mock-remote's instance name", () => {
  it("is on every answer as x-mock-instance: routes, errors, 404s and streams", async () => {
    const { url } = await start({ instance: "replica-a" });
    const answers = [
      await fetch(`${url}/health`),
      await fetch(`${url}/v1/models`),
      await chat(url, {}),
      await chat(url, { stream: true }),
      await chat(url, {}, { "x-mock-status": "503" }),
      await chat(url, {}, { "x-mock-fault": "malformed" }),
      await fetch(`${url}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: "{not json",
      }),
      await fetch(`${url}/no/such/route`),
      await fetch(`${url}/mock/requests`),
      await fetch(`${url}/mock/health`),
      await setHealth(url, '{"status": "bad"}'),
    ];
    expect(answers.map((answer) => answer.status)).toEqual([200, 200, 200, 200, 503, 200, 400, 404, 200, 200, 400]);
    expect(answers.map((answer) => answer.headers.get("x-mock-instance"))).toEqual(answers.map(() => "replica-a"));
    await Promise.all(answers.map((answer) => answer.arrayBuffer()));
  });

  it("is the completion's system_fingerprint, in an answer and in every streamed chunk", async () => {
    const { url } = await start({ instance: "replica-b" });
    const answer = (await (await chat(url, {})).json()) as Record<string, unknown>;
    expect(answer.system_fingerprint).toBe("replica-b");

    const streamed = await chat(url, { stream: true, stream_options: { include_usage: true } });
    const chunks = events(await streamed.text());
    expect(chunks.length).toBeGreaterThan(3);
    expect(chunks.map((chunk) => chunk.system_fingerprint)).toEqual(chunks.map(() => "replica-b"));
  });

  it("is the host name unless one is given", async () => {
    const { url } = await start();
    const answer = await fetch(`${url}/health`);
    expect(answer.headers.get("x-mock-instance")).toBe(hostname());
    await answer.arrayBuffer();
  });

  it("must fit in a header", () => {
    expect(() => createMockApp({ defaultDelayMs: 0, modelId: "m", instance: "two\nlines" })).toThrow(/instance/);
    expect(() => createMockApp({ defaultDelayMs: 0, modelId: "m", instance: "" })).toThrow(/instance/);
    expect(() => createMockApp({ defaultDelayMs: 0, modelId: "m", instance: " padded" })).toThrow(/instance/);
  });
});

describe("mock-remote's latency", () => {
  async function timed(answer: Promise<Response>): Promise<{ ms: number; status: number }> {
    const started = performance.now();
    const response = await answer;
    await response.arrayBuffer();
    return { ms: performance.now() - started, status: response.status };
  }

  it("delays every chat completion, streamed or not, on top of the request's own delay", async () => {
    const { url } = await start({ instance: "slow", latencyMs: 300 });
    const plain = await timed(chat(url, {}));
    const streamed = await timed(chat(url, { stream: true }));
    const both = await timed(chat(url, { mock: { delay_ms: 200 } }));
    expect(plain.status).toBe(200);
    expect(plain.ms).toBeGreaterThanOrEqual(295);
    expect(streamed.ms).toBeGreaterThanOrEqual(295);
    expect(both.ms).toBeGreaterThanOrEqual(495);
  });

  it("delays error answers too, and stays when `times` has run out", async () => {
    const { url } = await start({ latencyMs: 250 });
    const knobs = { status: 500, times: 1, key: "latency-times" };
    const failed = await timed(chat(url, { mock: knobs }));
    const healed = await timed(chat(url, { mock: knobs }));
    expect([failed.status, healed.status]).toEqual([500, 200]);
    expect(failed.ms).toBeGreaterThanOrEqual(245);
    expect(healed.ms).toBeGreaterThanOrEqual(245);
  });

  it("is not added to the other routes", async () => {
    const { url } = await start({ latencyMs: 2000 });
    const health = await timed(fetch(`${url}/health`));
    const models = await timed(fetch(`${url}/v1/models`));
    expect(health.ms).toBeLessThan(1000);
    expect(models.ms).toBeLessThan(1000);
  });

  it("answers at once when there is none (the default)", async () => {
    const { url } = await start();
    expect((await timed(chat(url, {}))).ms).toBeLessThan(1000);
  });
});

describe("mock-remote's health endpoint", () => {
  async function health(url: string): Promise<{ status: number; body: unknown }> {
    const answer = await fetch(`${url}/health`);
    return { status: answer.status, body: await answer.json() };
  }

  async function state(url: string): Promise<unknown> {
    return (await fetch(`${url}/mock/health`)).json();
  }

  it("answers 200 ok by default", async () => {
    const { url } = await start();
    expect(await health(url)).toEqual({ status: 200, body: { status: "ok" } });
  });

  it("answers the status it starts with", async () => {
    const { url } = await start({ healthStatus: 503 });
    expect(await health(url)).toEqual({ status: 503, body: { status: "failing" } });
  });

  it("fails and heals at run time through POST /mock/health", async () => {
    const { url } = await start();
    const failed = await setHealth(url, JSON.stringify({ status: 503 }));
    expect(failed.status).toBe(200);
    expect(await failed.json()).toEqual({ status: 503, checks: 0 });
    expect(await health(url)).toEqual({ status: 503, body: { status: "failing" } });
    expect(await health(url)).toEqual({ status: 503, body: { status: "failing" } });

    await setHealth(url, JSON.stringify({ status: 500 }));
    expect(await health(url)).toEqual({ status: 500, body: { status: "failing" } });
    await setHealth(url, JSON.stringify({ status: 299 }));
    expect(await health(url)).toEqual({ status: 299, body: { status: "ok" } });
    await setHealth(url, JSON.stringify({ status: 200 }));
    expect(await health(url)).toEqual({ status: 200, body: { status: "ok" } });
    // The completions are not affected: only what a health check sees changes.
    await setHealth(url, JSON.stringify({ status: 503 }));
    expect((await chat(url, {})).status).toBe(200);
  });

  it("counts the health checks it receives, and only those", async () => {
    const { url } = await start();
    expect(await state(url)).toEqual({ status: 200, checks: 0 });
    await health(url);
    await health(url);
    await (await chat(url, {})).arrayBuffer();
    await (await fetch(`${url}/v1/models`)).arrayBuffer();
    await setHealth(url, JSON.stringify({ status: 503 }));
    await health(url);
    expect(await state(url)).toEqual({ status: 503, checks: 3 });
  });

  it.each([
    ["a string", '{"status": "503"}'],
    ["a fraction", '{"status": 503.5}'],
    ["below 200", '{"status": 199}'],
    ["above 599", '{"status": 600}'],
    ["no status", "{}"],
    ["not an object", "[503]"],
    ["not JSON", "{status"],
  ])("refuses %s with an OpenAI-style 400 and keeps its status", async (_what, body) => {
    const { url } = await start({ healthStatus: 502 });
    const answer = await setHealth(url, body);
    expect(answer.status).toBe(400);
    // Broken JSON is refused by the body parser, with the app's usual error body (param null).
    expect(await answer.json()).toMatchObject({
      error: { message: expect.any(String), type: "invalid_request_error", code: null },
    });
    expect(await state(url)).toEqual({ status: 502, checks: 0 });
  });

  it("refuses a start-up status outside 200-599", () => {
    expect(() => createMockApp({ defaultDelayMs: 0, modelId: "m", healthStatus: 100 })).toThrow(/health status/);
    expect(() => createMockApp({ defaultDelayMs: 0, modelId: "m", healthStatus: 200.5 })).toThrow(/health status/);
  });
});

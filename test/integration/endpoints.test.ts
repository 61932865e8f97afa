import OpenAI from "openai";
import { type Sample, total } from "../support/exposition";
import { expectOneInterruptedStream, scrape } from "../support/metrics";
import { keyedServers, userMessage } from "../support/servers";

/**
 * `/v1/completions`, `/v1/responses` and chat with `n` > 1 through the official openai SDK: against the echo
 * backend and against mock-remote through the http backend, with stream faults, keys, limits and metrics.
 */

const APP_KEY = "gw-app-key-endpoints-0123456789ab";
const LOCAL_ONLY_KEY = "gw-local-only-key-endpoints-01234";

const servers = keyedServers({ app: APP_KEY, localOnly: LOCAL_ONLY_KEY }, "timeout: 0.5\ncircuit_breaker: false", 4);

function sdk(key = APP_KEY): OpenAI {
  return servers.sdk(key);
}

/** mock-remote's knobs ride in the body: the SDK passes fields it does not know through. */
function knobs(mock: Record<string, unknown>): object {
  return { mock };
}

/** What `run` rejected with, or undefined when it resolved. */
async function failure(run: () => Promise<unknown>): Promise<unknown> {
  try {
    await run();
    return undefined;
  } catch (error) {
    return error;
  }
}

async function raw(path: string, body: unknown): Promise<Response> {
  return fetch(`${servers.gateway.url}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${APP_KEY}` },
    body: JSON.stringify(body),
  });
}

/** A failed stream's request counted once under its endpoint, and once as stream_interrupted. */
function countedAsInterrupted(before: readonly Sample[], endpoint: string, status: number): Promise<void> {
  const labels = { backend: "remote", code: String(status), stream: "true", endpoint };
  return expectOneInterruptedStream(servers.gateway.url, before, labels, { authorization: `Bearer ${APP_KEY}` });
}

describe("POST /v1/completions", () => {
  it("echo: Echo: {prompt}, whole and streamed", async () => {
    const whole = await sdk().completions.create({ model: "local", prompt: "Hello world" });
    expect(whole.object).toBe("text_completion");
    expect(whole.choices[0]?.text).toBe("Echo: Hello world");
    expect(whole.usage?.total_tokens).toBeGreaterThan(0);
    const stream = await sdk().completions.create({ model: "local", prompt: "Hello world", stream: true });
    let text = "";
    for await (const chunk of stream) text += chunk.choices[0]?.text ?? "";
    expect(text).toBe("Echo: Hello world");
  });

  it("http: forwards to the upstream's /v1/completions and relays its answer, with its usage", async () => {
    const whole = await sdk().completions.create({ model: "remote", prompt: ["Hello", "world"], n: 2 });
    expect(whole.choices.map((choice) => [choice.index, choice.text])).toEqual([
      [0, "Remote: Hello\nworld"],
      [1, "Remote: Hello\nworld"],
    ]);
    expect((whole as unknown as { backend: string }).backend).toBe("remote");
    const seen = servers.mock.seen.filter((request) => request.path === "/v1/completions").at(-1);
    expect(seen?.body).toMatchObject({ model: "remote", prompt: ["Hello", "world"], n: 2 });

    const stream = await sdk().completions.create({
      model: "remote",
      prompt: "Hello world",
      stream: true,
      stream_options: { include_usage: true },
    });
    const chunks: OpenAI.Completion[] = [];
    for await (const chunk of stream) chunks.push(chunk);
    expect(chunks.map((chunk) => chunk.choices[0]?.text ?? "").join("")).toBe("Remote: Hello world");
    expect(new Set(chunks.map((chunk) => chunk.id)).size).toBe(1);
    // mock-remote counts a token per four characters: its usage, not the gateway's estimate, came through.
    expect(chunks.at(-1)?.usage).toEqual({ prompt_tokens: 3, completion_tokens: 5, total_tokens: 8 });
  });

  it.each([
    ["a connection cut after 2 pieces", { fault: "reset", after: 2 }, "upstream_stream_error", 502],
    ["a malformed event", { fault: "malformed", after: 1 }, "upstream_invalid_response", 502],
    ["a stall past the backend's timeout", { fault: "hang", after: 1 }, "upstream_timeout", 504],
  ])("http: %s raises an error in the SDK and counts as failed", async (_what, mockKnobs, code, status) => {
    const before = await scrape(servers.gateway.url, { authorization: `Bearer ${APP_KEY}` });
    const error = await failure(async () => {
      const stream = await sdk().completions.create({
        model: "remote",
        prompt: "Hello world",
        stream: true,
        ...knobs(mockKnobs),
      });
      for await (const chunk of stream) void chunk;
    });
    expect(error).toBeInstanceOf(OpenAI.APIError);
    expect((error as InstanceType<typeof OpenAI.APIError>).code).toBe(code);
    await countedAsInterrupted(before, "completions", status);
  });

  it("http: the in-band error is a data event, then [DONE]", async () => {
    const response = await raw("/v1/completions", {
      model: "remote",
      prompt: "Hello world",
      stream: true,
      mock: { fault: "reset", after: 1 },
    });
    expect(response.status).toBe(200);
    const events = (await response.text()).split("\n\n").filter((event) => event !== "");
    expect(events.at(-1)).toBe("data: [DONE]");
    expect(JSON.parse((events.at(-2) ?? "").replace(/^data: /, ""))).toMatchObject({
      error: { code: "upstream_stream_error" },
    });
  });

  it("refuses a request without a prompt with a 400 naming it", async () => {
    const error = await failure(() =>
      sdk().completions.create({ model: "local" } as unknown as OpenAI.CompletionCreateParamsNonStreaming),
    );
    expect(error).toBeInstanceOf(OpenAI.BadRequestError);
    expect((error as InstanceType<typeof OpenAI.BadRequestError>).param).toBe("prompt");
  });
});

describe("POST /v1/responses", () => {
  it("echo: a minimal Response, whole and through responses.stream()", async () => {
    const whole = await sdk().responses.create({ model: "local", input: "Hello world" });
    expect(whole.output_text).toBe("Echo: Hello world");
    expect(whole.status).toBe("completed");
    const stream = sdk().responses.stream({ model: "local", input: "Hello world" });
    const deltas: string[] = [];
    stream.on("response.output_text.delta", (event) => deltas.push(event.delta));
    const final = await stream.finalResponse();
    expect(final.output_text).toBe("Echo: Hello world");
    expect(deltas.join("")).toBe("Echo: Hello world");
  });

  it("http: passes the Response through (its id kept) and forwards previous_response_id unchanged", async () => {
    const first = await sdk().responses.create({ model: "remote", input: "Hello world" });
    expect(first.output_text).toBe("Remote: Hello world");
    expect(first.id).toMatch(/^resp_/);
    expect((first as unknown as { backend: string }).backend).toBe("remote");
    const second = await sdk().responses.create({
      model: "remote",
      input: "And again",
      previous_response_id: first.id,
    });
    expect(second.output_text).toBe("Remote: And again");
    const seen = servers.mock.seen.filter((request) => request.path === "/v1/responses").at(-1);
    expect(seen?.body).toMatchObject({ model: "remote", input: "And again", previous_response_id: first.id });
  });

  it("http: relays the upstream's typed events, with their names, and no [DONE]", async () => {
    const stream = sdk().responses.stream({ model: "remote", input: "Hello world" });
    const final = await stream.finalResponse();
    expect(final.output_text).toBe("Remote: Hello world");
    const response = await raw("/v1/responses", { model: "remote", input: "Hi", stream: true });
    expect(response.headers.get("x-gateway-backend")).toBe("remote");
    const events = (await response.text()).split("\n\n").filter((event) => event !== "");
    expect(events.some((event) => event.includes("[DONE]"))).toBe(false);
    for (const event of events) {
      const [name, data] = event.split("\n");
      expect(JSON.parse((data ?? "").replace(/^data: /, ""))).toMatchObject({ type: (name ?? "").slice(7) });
    }
    expect(events.at(-1)).toMatch(/^event: response.completed\n/);
  });

  it.each([
    ["a connection cut after 2 deltas", { fault: "reset", after: 2 }, "upstream_stream_error", 502],
    ["a malformed event", { fault: "malformed", after: 1 }, "upstream_invalid_response", 502],
    ["an event without a type", { fault: "untyped", after: 1 }, "upstream_invalid_response", 502],
    ["a stall past the backend's timeout", { fault: "hang", after: 1 }, "upstream_timeout", 504],
  ])("http: %s ends with an error event the SDK raises, counted as failed", async (_what, mockKnobs, code, status) => {
    const before = await scrape(servers.gateway.url, { authorization: `Bearer ${APP_KEY}` });
    const error = await failure(() =>
      sdk()
        .responses.stream({ model: "remote", input: "Hello world", ...knobs(mockKnobs) })
        .finalResponse(),
    );
    expect(error).toBeInstanceOf(OpenAI.APIError);
    expect((error as InstanceType<typeof OpenAI.APIError>).code).toBe(code);
    await countedAsInterrupted(before, "responses", status);
  });

  it("http: the upstream's own error event is relayed as an error event, its key redacted", async () => {
    const response = await raw("/v1/responses", {
      model: "remote",
      input: "Hi",
      stream: true,
      mock: { fault: "error", after: 1 },
    });
    const events = (await response.text()).split("\n\n").filter((event) => event !== "");
    const last = events.at(-1) ?? "";
    expect(last.startsWith("event: error\ndata: ")).toBe(true);
    const error = JSON.parse(last.slice("event: error\ndata: ".length)) as Record<string, unknown>;
    expect(error).toMatchObject({ type: "error", code: "upstream_stream_error", param: null });
    expect(error.sequence_number).toBe(events.length - 1);
    expect(String(error.message)).toContain("Incorrect API key provided");
  });
});

describe("chat completions with n > 1", () => {
  it("echo and http: n choices, whole and streamed", async () => {
    for (const model of ["local", "remote"]) {
      const whole = await sdk().chat.completions.create({ model, messages: userMessage("Hi there"), n: 3 });
      expect(whole.choices.map((choice) => choice.index)).toEqual([0, 1, 2]);
      expect(new Set(whole.choices.map((choice) => choice.message.content)).size).toBe(1);
      const stream = await sdk().chat.completions.create({
        model,
        messages: userMessage("Hi there"),
        n: 2,
        stream: true,
      });
      const texts = ["", ""];
      const finishes: (string | null)[] = [];
      for await (const chunk of stream)
        for (const choice of chunk.choices) {
          texts[choice.index] += choice.delta.content ?? "";
          if (choice.finish_reason !== null) finishes.push(choice.finish_reason);
        }
      expect(texts[0]).toBe(whole.choices[0]?.message.content);
      expect(texts[1]).toBe(texts[0]);
      expect(finishes).toEqual(["stop", "stop"]);
    }
  });
});

describe("keys, limits and metrics on the new endpoints", () => {
  it("applies the key's allowlist and limits, and counts requests and tokens by endpoint", async () => {
    const before = await scrape(servers.gateway.url, { authorization: `Bearer ${APP_KEY}` });
    const local = sdk(LOCAL_ONLY_KEY);
    expect(await failure(() => local.completions.create({ model: "remote", prompt: "x" }))).toBeInstanceOf(
      OpenAI.PermissionDeniedError,
    );
    expect(await failure(() => local.responses.create({ model: "remote", input: "x" }))).toBeInstanceOf(
      OpenAI.PermissionDeniedError,
    );
    await local.completions.create({ model: "local", prompt: "one two" });
    await local.responses.create({ model: "local", input: "three" });
    expect(await failure(() => local.responses.create({ model: "local", input: "four" }))).toBeInstanceOf(
      OpenAI.RateLimitError,
    );

    const after = await scrape(servers.gateway.url, { authorization: `Bearer ${APP_KEY}` });
    const delta = (name: string, labels: Record<string, string>) =>
      total(after, name, labels) - total(before, name, labels);
    expect(delta("gateway_requests_total", { endpoint: "completions", backend: "local", code: "200" })).toBe(1);
    expect(delta("gateway_requests_total", { endpoint: "responses", backend: "local", code: "200" })).toBe(1);
    expect(delta("gateway_requests_total", { endpoint: "responses", code: "429" })).toBe(1);
    expect(delta("gateway_requests_total", { endpoint: "completions", code: "403" })).toBe(1);
    expect(delta("gateway_tokens_total", { endpoint: "completions", backend: "local", type: "prompt" })).toBe(2);
    expect(delta("gateway_tokens_total", { endpoint: "responses", backend: "local", type: "prompt" })).toBe(1);
    expect(delta("gateway_requests_total", { endpoint: "chat" })).toBe(0);
  });
});

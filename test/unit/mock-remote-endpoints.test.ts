import OpenAI from "openai";
import type { MockOptions, SeenRequest } from "../../mock-remote/src/app";
import { type RunningMock, startMock } from "../support/servers";
import { mockTokens } from "../../mock-remote/src/usage";

/**
 * mock-remote's answers beyond one chat choice: chat with `n` choices, the legacy /v1/completions and the
 * Responses API, with their knobs and faults. Real HTTP on an ephemeral loopback port; the official openai
 * SDK reads the answers too, as the proof that their shapes are what clients expect.
 */

const running: RunningMock[] = [];

/** A mock-remote on an ephemeral loopback port (the shared test helper), closed after each test. */
async function start(options: Partial<MockOptions> = {}): Promise<RunningMock> {
  const mock = await startMock({ instance: "replica-e", ...options });
  running.push(mock);
  return mock;
}

afterEach(async () => {
  await Promise.all(running.splice(0).map((mock) => mock.close()));
});

function post(
  url: string,
  path: string,
  body: Record<string, unknown>,
  headers: Record<string, string> = {},
): Promise<Response> {
  return fetch(`${url}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify(body),
  });
}

const chat = (url: string, body: Record<string, unknown>, headers: Record<string, string> = {}) =>
  post(
    url,
    "/v1/chat/completions",
    { model: "m", messages: [{ role: "user", content: "Hello pool" }], ...body },
    headers,
  );
const complete = (url: string, body: Record<string, unknown>, headers: Record<string, string> = {}) =>
  post(url, "/v1/completions", { model: "m", prompt: "Hello pool", ...body }, headers);
const respond = (url: string, body: Record<string, unknown>, headers: Record<string, string> = {}) =>
  post(url, "/v1/responses", { model: "m", input: "Hello pool", ...body }, headers);

type Usage = Record<string, number>;

/** A chat or text completion, or one of their chunks: the fields these tests read. */
interface Completion {
  readonly id: string;
  readonly object: string;
  readonly created: number;
  readonly model: string;
  readonly system_fingerprint: string;
  readonly choices: {
    readonly index: number;
    readonly text?: string;
    readonly delta?: Record<string, unknown>;
    readonly message?: { readonly content: string };
    readonly finish_reason: string | null;
  }[];
  readonly usage?: Usage | null;
}

/** A Responses API response: the fields these tests read. */
interface ResponseBody {
  readonly id: string;
  readonly status: string;
  readonly model: string;
  readonly created_at: number;
  readonly previous_response_id: string | null;
  readonly output: { readonly id: string; readonly content: { readonly text: string }[] }[];
  readonly usage: Usage | null;
}

/** One typed event of a Responses API stream. */
interface ResponseEvent {
  readonly type: string;
  readonly sequence_number: number;
  readonly response?: ResponseBody;
  readonly item?: { readonly id: string; readonly status: string };
  readonly item_id?: string;
  readonly delta?: string;
  readonly text?: string;
  readonly logprobs?: unknown;
  readonly part?: unknown;
}

async function json<T>(answer: Response | Promise<Response>): Promise<T> {
  return (await (await answer).json()) as T;
}

/** The JSON of each `data:` line of an event stream, `[DONE]` left out. */
function dataEvents(text: string): Completion[] {
  return text
    .split("\n")
    .filter((line) => line.startsWith("data: ") && line !== "data: [DONE]")
    .map((line) => JSON.parse(line.slice("data: ".length)) as Completion);
}

/** The parsed JSON of each typed event. */
function typedData(text: string): ResponseEvent[] {
  return typedEvents(text).map((event) => JSON.parse(event.data) as ResponseEvent);
}

/** A typed event stream's events: the `event:` name and the raw `data:` text of each. */
function typedEvents(text: string): { event: string | undefined; data: string }[] {
  return text
    .split("\n\n")
    .filter((block) => block !== "")
    .map((block) => {
      const lines = block.split("\n");
      return {
        event: lines.find((line) => line.startsWith("event: "))?.slice("event: ".length),
        data: lines.find((line) => line.startsWith("data: "))?.slice("data: ".length) ?? "",
      };
    });
}

/** Reads an answer that mock-remote drops part way: the read fails, and what came before is returned. */
async function readUntilDropped(answer: Response): Promise<{ text: string; dropped: boolean }> {
  const reader = answer.body?.getReader();
  const decoder = new TextDecoder();
  let text = "";
  try {
    for (;;) {
      const chunk = await reader?.read();
      if (chunk === undefined || chunk.done) return { text, dropped: false };
      text += decoder.decode(chunk.value, { stream: true });
    }
  } catch {
    return { text, dropped: true };
  }
}

/** Reads a stream that hangs: whatever arrives within `ms`, then gives up. */
async function readHanging(url: string, path: string, body: Record<string, unknown>, ms: number): Promise<string> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), ms);
  let text = "";
  try {
    const answer = await fetch(`${url}${path}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
      signal: controller.signal,
    });
    const reader = answer.body?.getReader();
    const decoder = new TextDecoder();
    for (;;) {
      const chunk = await reader?.read();
      if (chunk === undefined || chunk.done) break;
      text += decoder.decode(chunk.value, { stream: true });
    }
    return `${text}(ended)`;
  } catch {
    return `${text}(aborted)`;
  } finally {
    clearTimeout(timer);
  }
}

/** The official client pointed at mock-remote; quiet, for tests that make it fail on purpose. */
function sdk(url: string, quiet = false): OpenAI {
  return new OpenAI({
    baseURL: `${url}/v1`,
    apiKey: "sk-mock-key",
    maxRetries: 0,
    ...(quiet ? { logLevel: "off" } : {}),
  });
}

describe("mock-remote's chat completions with n choices", () => {
  const content = "Remote: Hello pool";

  it("answers n choices, indexed 0..n-1, each the same message, all of them counted", async () => {
    const { url } = await start();
    const answer = await json<Completion>(chat(url, { n: 3 }));
    expect(answer.choices).toEqual(
      [0, 1, 2].map((index) => ({
        index,
        message: { role: "assistant", content },
        finish_reason: "stop",
        logprobs: null,
      })),
    );
    expect(answer.usage).toEqual({
      prompt_tokens: mockTokens("Hello pool"),
      completion_tokens: 3 * mockTokens(content),
      total_tokens: mockTokens("Hello pool") + 3 * mockTokens(content),
    });
  });

  it.each([0, 129, 2.5, "3", null, -1])("answers one choice for n = %p", async (n) => {
    const { url } = await start();
    const answer = await json<Completion>(chat(url, { n }));
    expect(answer.choices).toHaveLength(1);
    expect(answer.usage?.completion_tokens).toBe(mockTokens(content));
  });

  it("streams a role chunk per choice, then each word for every choice in turn, then a finish per choice", async () => {
    const { url } = await start();
    const streamed = await chat(url, { n: 3, stream: true, stream_options: { include_usage: true } });
    const text = await streamed.text();
    expect(text.endsWith("data: [DONE]\n\n")).toBe(true);
    const chunks = dataEvents(text);
    // One choice per chunk, whatever n is, as OpenAI streams it.
    expect(chunks.slice(0, -1).every((chunk) => chunk.choices.length === 1)).toBe(true);
    const described = chunks.map((chunk) =>
      chunk.choices.length === 0
        ? "usage"
        : `${chunk.choices[0]?.index}:${chunk.choices[0]?.finish_reason ?? JSON.stringify(chunk.choices[0]?.delta)}`,
    );
    const words = ["Remote:", " Hello", " pool"];
    expect(described).toEqual([
      ...[0, 1, 2].map((i) => `${i}:{"role":"assistant","content":""}`),
      ...words.flatMap((word) => [0, 1, 2].map((i) => `${i}:${JSON.stringify({ content: word })}`)),
      "0:stop",
      "1:stop",
      "2:stop",
      "usage",
    ]);
    expect(chunks.at(-1)?.usage).toEqual({
      prompt_tokens: mockTokens("Hello pool"),
      completion_tokens: 3 * mockTokens(content),
      total_tokens: mockTokens("Hello pool") + 3 * mockTokens(content),
    });
    expect(new Set(chunks.map((chunk) => chunk.id)).size).toBe(1);
    expect(chunks.every((chunk) => chunk.system_fingerprint === "replica-e")).toBe(true);
  });

  it("places a streamed fault after `after` rounds of every choice", async () => {
    const { url } = await start();
    const text = await (await chat(url, { n: 2, stream: true, mock: { fault: "malformed", after: 1 } })).text();
    const lines = text.split("\n\n").filter((line) => line !== "");
    // Two role chunks, one round of two content chunks, then the broken event.
    expect(lines).toHaveLength(5);
    expect(dataEvents(lines.slice(0, 4).join("\n\n")).map((chunk) => chunk.choices[0]?.index)).toEqual([0, 1, 0, 1]);
    expect(lines[4]).toBe('data: {"id": "broken", "choices": [');
  });

  it("is read by the openai SDK: n choices, streamed and not", async () => {
    const { url } = await start();
    const client = sdk(url);
    const answer = await client.chat.completions.create({
      model: "m",
      n: 2,
      messages: [{ role: "user", content: "hi" }],
    });
    expect(answer.choices.map((choice) => [choice.index, choice.message.content])).toEqual([
      [0, "Remote: hi"],
      [1, "Remote: hi"],
    ]);
    const stream = await client.chat.completions.create({
      model: "m",
      n: 2,
      stream: true,
      messages: [{ role: "user", content: "hi" }],
    });
    const texts = ["", ""];
    for await (const chunk of stream)
      for (const choice of chunk.choices) texts[choice.index] += choice.delta.content ?? "";
    expect(texts).toEqual(["Remote: hi", "Remote: hi"]);
  });
});

describe("mock-remote's legacy completions", () => {
  it("answers a text_completion", async () => {
    const { url } = await start();
    const answer = await complete(url, {});
    expect(answer.status).toBe(200);
    expect(answer.headers.get("x-mock-instance")).toBe("replica-e");
    const body = await json<Completion>(answer);
    expect(body).toEqual({
      id: expect.stringMatching(/^cmpl-[0-9a-f-]{36}$/),
      object: "text_completion",
      created: expect.any(Number),
      model: "m",
      system_fingerprint: "replica-e",
      choices: [{ text: "Remote: Hello pool", index: 0, logprobs: null, finish_reason: "stop" }],
      usage: { prompt_tokens: 3, completion_tokens: 5, total_tokens: 8 },
    });
    expect(Math.abs(body.created - Date.now() / 1000)).toBeLessThan(60);
  });

  it.each([
    ["a string", "one two", "one two"],
    ["strings", ["one", "two"], "one\ntwo"],
    ["token ids", [1, 2, 3], "1 2 3"],
    ["arrays of token ids", [[1, 2], [3]], "1 2\n3"],
  ])("takes a prompt of %s", async (_what, prompt, text) => {
    const { url } = await start();
    const body = await json<Completion>(complete(url, { prompt }));
    expect(body.choices[0]?.text).toBe(`Remote: ${text}`);
  });

  it("answers the configured model when the request names none, and n choices", async () => {
    const { url } = await start();
    const body = await json<Completion>(post(url, "/v1/completions", { prompt: "hi", n: 2 }));
    expect(body.model).toBe("mock-model");
    expect(body.choices.map((choice) => choice.index)).toEqual([0, 1]);
    expect(body.usage?.completion_tokens).toBe(2 * mockTokens("Remote: hi"));
  });

  it("streams a text per word, a finish, the usage when asked, then [DONE]", async () => {
    const { url } = await start();
    const answer = await complete(url, { stream: true, stream_options: { include_usage: true } });
    expect(answer.headers.get("content-type")).toMatch(/^text\/event-stream/);
    const text = await answer.text();
    expect(text.endsWith("\n\ndata: [DONE]\n\n")).toBe(true);
    const chunks = dataEvents(text);
    expect(chunks.map((chunk) => chunk.choices)).toEqual([
      [{ text: "Remote:", index: 0, logprobs: null, finish_reason: null }],
      [{ text: " Hello", index: 0, logprobs: null, finish_reason: null }],
      [{ text: " pool", index: 0, logprobs: null, finish_reason: null }],
      [{ text: "", index: 0, logprobs: null, finish_reason: "stop" }],
      [],
    ]);
    expect(chunks.at(-1)?.usage).toEqual({ prompt_tokens: 3, completion_tokens: 5, total_tokens: 8 });
    for (const chunk of chunks) {
      expect(chunk).toMatchObject({ object: "text_completion", model: "m", system_fingerprint: "replica-e" });
      expect(chunk.id).toBe(chunks[0]?.id);
    }
  });

  it("streams no usage unless asked, and interleaves n choices", async () => {
    const { url } = await start();
    const chunks = dataEvents(await (await complete(url, { stream: true, n: 2, prompt: "x" })).text());
    expect(
      chunks.map((chunk) => [chunk.choices[0]?.index, chunk.choices[0]?.text, chunk.choices[0]?.finish_reason]),
    ).toEqual([
      [0, "Remote:", null],
      [1, "Remote:", null],
      [0, " x", null],
      [1, " x", null],
      [0, "", "stop"],
      [1, "", "stop"],
    ]);
    expect(chunks.some((chunk) => "usage" in chunk)).toBe(false);
  });

  it("streams an in-band error quoting the key after `after` pieces", async () => {
    const { url } = await start();
    const answer = await complete(
      url,
      { stream: true, user: "alice", mock: { fault: "error", after: 2 } },
      { authorization: "Bearer sk-secret-1" },
    );
    expect(answer.status).toBe(200);
    const text = await answer.text();
    expect(dataEvents(text.split("event: error")[0] ?? "").map((chunk) => chunk.choices[0]?.text)).toEqual([
      "Remote:",
      " Hello",
    ]);
    expect(
      text.endsWith(
        `event: error\ndata: ${JSON.stringify({ error: { message: "User alice: Incorrect API key provided: sk-secret-1", type: "mock_error", param: null, code: "mock_fault" } })}\n\n`,
      ),
    ).toBe(true);
    expect(text).not.toContain("[DONE]");
  });

  it("drops the connection mid-stream on reset, and before answering at after 0", async () => {
    const { url } = await start();
    const midway = await readUntilDropped(await complete(url, { stream: true, mock: { fault: "reset", after: 1 } }));
    expect(midway.dropped).toBe(true);
    expect(dataEvents(midway.text).map((chunk) => chunk.choices[0]?.text)).toEqual(["Remote:"]);
    await expect(complete(url, { stream: true, mock: { fault: "reset" } })).rejects.toThrow();
    await expect(complete(url, { mock: { fault: "reset" } })).rejects.toThrow();
  });

  it("sends a broken or a deep event mid-stream", async () => {
    const { url } = await start();
    const malformed = await (await complete(url, { stream: true, mock: { fault: "malformed", after: 1 } })).text();
    expect(malformed.endsWith('data: {"id": "broken", "choices": [\n\n')).toBe(true);
    const deep = await (await complete(url, { stream: true, mock: { fault: "deep", after: 1 } })).text();
    expect(deep.length).toBeGreaterThan(2_000_000);
    expect(deep).toContain('"extra":[[[[');
  });

  it("answers the whole-answer faults: malformed, deep, empty, status (with times)", async () => {
    const { url } = await start();
    const malformed = await complete(url, { mock: { fault: "malformed" } });
    expect([malformed.status, await malformed.text()]).toEqual([200, '{"id": "cmpl-broken", "choices": [']);
    const deep = await (await complete(url, { mock: { fault: "deep" } })).text();
    expect(deep.length).toBeGreaterThan(2_000_000);
    const empty = await json<unknown>(complete(url, { mock: { fault: "empty" } }));
    expect(empty).toEqual({ id: expect.stringMatching(/^cmpl-/), object: "text_completion" });
    const knobs = { status: 429, retry_after: "7", times: 1, key: "completions-times" };
    const limited = await complete(url, { mock: knobs });
    expect([limited.status, limited.headers.get("retry-after")]).toEqual([429, "7"]);
    expect(await limited.json()).toMatchObject({ error: { code: "mock_status" } });
    expect((await complete(url, { mock: knobs })).status).toBe(200);
  });

  it("keeps a hanging stream open with nothing more sent", async () => {
    const { url } = await start();
    const text = await readHanging(
      url,
      "/v1/completions",
      { prompt: "a b c", stream: true, mock: { fault: "hang", after: 2 } },
      300,
    );
    expect(text.endsWith("(aborted)")).toBe(true);
    expect(dataEvents(text.replace("(aborted)", "")).map((chunk) => chunk.choices[0]?.text)).toEqual(["Remote:", " a"]);
  });

  it("is read by the openai SDK, streamed and not", async () => {
    const { url } = await start();
    const client = sdk(url);
    const answer = await client.completions.create({ model: "m", prompt: "hi" });
    expect(answer.choices[0]?.text).toBe("Remote: hi");
    expect(answer.usage?.completion_tokens).toBe(mockTokens("Remote: hi"));
    const stream = await client.completions.create({
      model: "m",
      prompt: "hi",
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = "";
    let usage: unknown;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.text ?? "";
      usage = chunk.usage ?? usage;
    }
    expect(text).toBe("Remote: hi");
    expect(usage).toEqual({ prompt_tokens: 1, completion_tokens: 3, total_tokens: 4 });
    // The in-band error surfaces as the SDK's APIError.
    // The knobs as headers here: the SDK's types have no `mock` field.
    const failing = await client.completions.create(
      { model: "m", prompt: "hi", stream: true },
      { headers: { "x-mock-fault": "error", "x-mock-after": "1" } },
    );
    await expect(
      (async () => {
        for await (const _chunk of failing);
      })(),
    ).rejects.toThrow(/Incorrect API key provided: sk-mock-key/);
  });
});

describe("mock-remote's Responses API", () => {
  it("answers a completed response", async () => {
    const { url } = await start();
    const answer = await respond(url, { previous_response_id: "resp_before" });
    expect(answer.status).toBe(200);
    expect(answer.headers.get("x-mock-instance")).toBe("replica-e");
    const body = await json<ResponseBody>(answer);
    expect(body).toEqual({
      id: expect.stringMatching(/^resp_[0-9a-f]{32}$/),
      object: "response",
      created_at: expect.any(Number),
      status: "completed",
      model: "m",
      output: [
        {
          id: expect.stringMatching(/^msg_[0-9a-f]{32}$/),
          type: "message",
          status: "completed",
          role: "assistant",
          content: [{ type: "output_text", text: "Remote: Hello pool", annotations: [] }],
        },
      ],
      usage: {
        input_tokens: 3,
        output_tokens: 5,
        total_tokens: 8,
        input_tokens_details: { cached_tokens: 0 },
        output_tokens_details: { reasoning_tokens: 0 },
      },
      previous_response_id: "resp_before",
      metadata: { instance: "replica-e" },
      error: null,
      incomplete_details: null,
      instructions: null,
      parallel_tool_calls: true,
      tool_choice: "auto",
      tools: [],
      temperature: null,
      top_p: null,
    });
    expect(Math.abs(body.created_at - Date.now() / 1000)).toBeLessThan(60);
  });

  it("takes the user messages of an input list, string or input_text content, and nothing else", async () => {
    const { url } = await start();
    const input = [
      { role: "system", content: "be brief" },
      { role: "user", content: "first" },
      { type: "message", role: "user", content: [{ type: "input_text", text: "second" }, { type: "input_image" }] },
      { type: "function_call_output", call_id: "c1", output: "ignored" },
      { role: "assistant", content: "earlier answer" },
    ];
    const body = await json<ResponseBody>(post(url, "/v1/responses", { input }));
    expect(body.model).toBe("mock-model");
    expect(body.previous_response_id).toBeNull();
    expect(body.output[0]?.content[0]?.text).toBe("Remote: first\nsecond");
  });

  it("streams typed events in the order the SDK checks, numbered from 0, without [DONE]", async () => {
    const { url } = await start();
    const answer = await respond(url, { stream: true });
    expect(answer.headers.get("content-type")).toMatch(/^text\/event-stream/);
    const text = await answer.text();
    expect(text).not.toContain("[DONE]");
    const events = typedEvents(text);
    const datas = typedData(text);
    expect(events.map((event) => event.event)).toEqual(datas.map((data) => data.type));
    expect(datas.map((data) => data.type)).toEqual([
      "response.created",
      "response.in_progress",
      "response.output_item.added",
      "response.content_part.added",
      "response.output_text.delta",
      "response.output_text.delta",
      "response.output_text.delta",
      "response.output_text.done",
      "response.content_part.done",
      "response.output_item.done",
      "response.completed",
    ]);
    expect(datas.map((data) => data.sequence_number)).toEqual(datas.map((_, index) => index));
    const [created, inProgress, added, partAdded, , , , textDone, partDone, itemDone, completed] = datas;
    expect(created?.response).toMatchObject({ status: "in_progress", output: [], usage: null, model: "m" });
    expect(inProgress?.response).toEqual(created?.response);
    const itemId = added?.item?.id;
    expect(added).toMatchObject({ output_index: 0, item: { type: "message", status: "in_progress", content: [] } });
    expect(partAdded).toMatchObject({ item_id: itemId, output_index: 0, content_index: 0, part: { text: "" } });
    expect(datas.slice(4, 7).map((data) => [data.item_id, data.delta, data.logprobs])).toEqual([
      [itemId, "Remote:", []],
      [itemId, " Hello", []],
      [itemId, " pool", []],
    ]);
    expect(textDone).toMatchObject({ item_id: itemId, text: "Remote: Hello pool", logprobs: [] });
    expect(partDone?.part).toEqual({ type: "output_text", text: "Remote: Hello pool", annotations: [] });
    expect(itemDone?.item).toMatchObject({ id: itemId, status: "completed" });
    expect(completed?.response).toMatchObject({
      id: created?.response?.id,
      status: "completed",
      output: [itemDone?.item],
      usage: { input_tokens: 3, output_tokens: 5, total_tokens: 8 },
      metadata: { instance: "replica-e" },
    });
  });

  it("streams the `chunks` knob's number of deltas", async () => {
    const { url } = await start();
    const datas = typedData(await (await respond(url, { stream: true, mock: { chunks: 5 } })).text());
    const deltas = datas.filter((data) => data.type === "response.output_text.delta").map((data) => data.delta);
    expect(deltas).toEqual(["Remote:", " Hello", " pool", "Remote:", " Hello"]);
    expect(datas.at(-1)?.response?.output[0]?.content[0]?.text).toBe(deltas.join(""));
  });

  /** A faulty stream's events before its fault, and its last event as sent. */
  async function faulty(url: string, fault: string, after: number) {
    const text = await (
      await respond(url, { stream: true, mock: { fault, after } }, { authorization: "Bearer sk-secret-2" })
    ).text();
    const events = typedEvents(text);
    return { types: events.slice(0, -1).map((event) => event.event), last: events.at(-1), text };
  }

  const opening = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
  ];

  it("sends a broken event after `after` deltas on malformed", async () => {
    const { url } = await start();
    const { types, last, text } = await faulty(url, "malformed", 1);
    expect(types).toEqual([...opening, "response.output_text.delta"]);
    expect(last).toEqual({
      event: "response.output_text.delta",
      data: '{"type": "response.output_text.delta", "delta": ',
    });
    expect(text.endsWith('"delta": \n\n')).toBe(true);
  });

  it("sends an in-band error event quoting the key, numbered in turn, on error", async () => {
    const { url } = await start();
    const { types, last } = await faulty(url, "error", 2);
    expect(types).toEqual([...opening, "response.output_text.delta", "response.output_text.delta"]);
    expect(last?.event).toBe("error");
    expect(JSON.parse(last?.data ?? "")).toEqual({
      type: "error",
      code: "mock_fault",
      message: "Incorrect API key provided: sk-secret-2",
      param: null,
      sequence_number: 6,
    });
  });

  it("sends an event without a type on untyped (after the opening at after 0)", async () => {
    const { url } = await start();
    const { types, last } = await faulty(url, "untyped", 0);
    expect(types).toEqual(opening);
    expect(last).toEqual({ event: "response.output_text.delta", data: '{"delta":"x"}' });
  });

  it("ignores untyped on the other routes", async () => {
    const { url } = await start();
    const chatText = await (await chat(url, { stream: true, mock: { fault: "untyped" } })).text();
    expect(chatText.endsWith("data: [DONE]\n\n")).toBe(true);
    const completionText = await (await complete(url, { stream: true, mock: { fault: "untyped", after: 1 } })).text();
    expect(completionText.endsWith("data: [DONE]\n\n")).toBe(true);
    expect((await json<ResponseBody>(respond(url, { mock: { fault: "untyped" } }))).status).toBe("completed");
  });

  it("sends one deep event on deep", async () => {
    const { url } = await start();
    const { types, last } = await faulty(url, "deep", 1);
    expect(types).toEqual([...opening, "response.output_text.delta"]);
    expect(last?.event).toBe("response.output_text.delta");
    expect(last?.data.length).toBeGreaterThan(2_000_000);
    expect(last?.data.startsWith('{"type":"response.output_text.delta","sequence_number":5,')).toBe(true);
  });

  it("drops the connection on reset, mid-stream or before answering", async () => {
    const { url } = await start();
    const midway = await readUntilDropped(await respond(url, { stream: true, mock: { fault: "reset", after: 2 } }));
    expect(midway.dropped).toBe(true);
    expect(typedEvents(midway.text).map((event) => event.event)).toEqual([
      ...opening,
      "response.output_text.delta",
      "response.output_text.delta",
    ]);
    await expect(respond(url, { stream: true, mock: { fault: "reset" } })).rejects.toThrow();
    await expect(respond(url, { mock: { fault: "reset" } })).rejects.toThrow();
  });

  it("hangs mid-stream on hang", async () => {
    const { url } = await start();
    const text = await readHanging(
      url,
      "/v1/responses",
      { input: "hi", stream: true, mock: { fault: "hang", after: 1 } },
      300,
    );
    expect(text.endsWith("(aborted)")).toBe(true);
    expect(typedEvents(text.replace("(aborted)", "")).map((event) => event.event)).toEqual([
      ...opening,
      "response.output_text.delta",
    ]);
  });

  it("answers the whole-answer faults: malformed, deep, empty, status, delay", async () => {
    const { url } = await start();
    const malformed = await respond(url, { mock: { fault: "malformed" } });
    expect([malformed.status, await malformed.text()]).toEqual([
      200,
      '{"id": "resp_broken", "object": "response", "output": [',
    ]);
    expect((await (await respond(url, { mock: { fault: "deep" } })).text()).length).toBeGreaterThan(2_000_000);
    expect(await (await respond(url, { mock: { fault: "empty" } })).json()).toEqual({});
    expect(await (await respond(url, { stream: true, mock: { fault: "empty" } })).json()).toEqual({});
    const unauthorized = await respond(url, { mock: { status: 401 } }, { authorization: "Bearer sk-secret-3" });
    expect(unauthorized.status).toBe(401);
    expect(await unauthorized.json()).toMatchObject({ error: { message: "Incorrect API key provided: sk-secret-3" } });
    const started = performance.now();
    expect((await respond(url, { stream: true, mock: { delay_ms: 200 } }, {})).status).toBe(200);
    expect(performance.now() - started).toBeGreaterThanOrEqual(195);
  });

  it("adds the replica's latency and records what it saw", async () => {
    const { url } = await start({ latencyMs: 200 });
    const started = performance.now();
    await (await respond(url, {})).arrayBuffer();
    await (await complete(url, {})).arrayBuffer();
    expect(performance.now() - started).toBeGreaterThanOrEqual(395);
    const seen = await json<SeenRequest[]>(fetch(`${url}/mock/requests`));
    expect(seen.map((entry) => entry.path)).toEqual(["/v1/responses", "/v1/completions"]);
    expect(seen[0]?.body).toMatchObject({ input: "Hello pool" });
  });

  it("is read by the openai SDK: create, and stream to its final response", async () => {
    const { url } = await start();
    const client = sdk(url);
    const created = await client.responses.create({ model: "m", input: "hi" });
    expect(created.output_text).toBe("Remote: hi");
    expect(created.usage?.total_tokens).toBe(mockTokens("hi") + mockTokens("Remote: hi"));

    const stream = client.responses.stream({ model: "m", input: "hi" });
    const deltas: string[] = [];
    stream.on("response.output_text.delta", (event) => deltas.push(event.delta));
    const final = await stream.finalResponse();
    expect(final.output_text).toBe("Remote: hi");
    expect(final.status).toBe("completed");
    expect(deltas).toEqual(["Remote:", " hi"]);

    const iterated = await client.responses.create({ model: "m", input: "a b", stream: true });
    const types: string[] = [];
    for await (const event of iterated) types.push(event.type);
    // Four opening events, one delta per word of "Remote: a b", four closing ones.
    expect(types).toHaveLength(11);
    expect(types.filter((type) => type === "response.output_text.delta")).toHaveLength(3);
  });

  it.each([
    ["error", /Incorrect API key provided: sk-mock-key/],
    ["untyped", /Unhandled response stream event/],
    ["malformed", /malformed|JSON/],
  ])("makes the openai SDK's stream fail on %s", async (fault, message) => {
    const { url } = await start();
    const stream = sdk(url, true).responses.stream(
      { model: "m", input: "hi" },
      { headers: { "x-mock-fault": fault, "x-mock-after": "1" } },
    );
    await expect(stream.finalResponse()).rejects.toThrow(message);
  });
});

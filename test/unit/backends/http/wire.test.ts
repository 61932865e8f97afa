import {
  firstChoice,
  parseAnswer,
  parseEmbeddings,
  parseResponse,
  parseResponseEvent,
  parseStreamEvent,
  parseTextAnswer,
  parseTextStreamEvent,
  quoteUpstreamError,
  upstreamErrorMessage,
} from "../../../../gateway/src/backends/http/wire";
import { UpstreamInvalidResponseError, UpstreamStreamError } from "../../../../gateway/src/errors";
import { MAX_JSON_DEPTH } from "../../../../gateway/src/utils/json-depth";

/** What `run` threw; fails the test if it did not throw. */
function thrown(run: () => unknown): unknown {
  try {
    run();
  } catch (error) {
    return error;
  }
  throw new Error("expected a throw");
}

/** `levels` arrays inside one another, as JSON text. */
function nested(levels: number): string {
  return `${"[".repeat(levels)}${"]".repeat(levels)}`;
}

function answer(message: unknown, extra: Record<string, unknown> = {}): string {
  return JSON.stringify({ choices: [{ index: 0, message, finish_reason: "stop" }], ...extra });
}

const events = (data: string, type?: string, apiKey?: string) => {
  const event = parseStreamEvent(type, data, "remote", apiKey);
  return event === undefined ? [] : [event];
};

describe("parseAnswer", () => {
  it("reads the message, finish reason and usage", () => {
    const text = answer(
      { role: "assistant", content: "Hi" },
      { usage: { prompt_tokens: 3, completion_tokens: 1, total_tokens: 4 } },
    );
    expect(parseAnswer(text, "remote")).toEqual({
      message: { role: "assistant", content: "Hi" },
      finishReason: "stop",
      usage: { prompt_tokens: 3, completion_tokens: 1, total_tokens: 4 },
    });
  });

  it("passes extra message fields through and normalises role and a missing content", () => {
    const toolCalls = [{ id: "c1", type: "function", function: { name: "f", arguments: "{}" } }];
    const result = parseAnswer(
      JSON.stringify({ choices: [{ message: { role: "tool", tool_calls: toolCalls } }] }),
      "remote",
    );
    expect(result.message).toEqual({ role: "assistant", content: null, tool_calls: toolCalls });
    // No finish_reason, and no usable usage: "stop" and no usage at all.
    expect(result.finishReason).toBe("stop");
    expect(result).not.toHaveProperty("usage");
  });

  it.each([
    ["that is not JSON", "<html>502</html>", "body is not JSON"],
    [
      "that is nested too deep",
      answer({ role: "assistant", content: "Hi" }, { extra: JSON.parse(nested(MAX_JSON_DEPTH + 1)) as unknown }),
      `body is nested more than ${MAX_JSON_DEPTH} levels deep`,
    ],
    ["without choices", JSON.stringify({ object: "chat.completion" }), "no choices[0]"],
    ["with no choice", JSON.stringify({ choices: [] }), "no choices[0]"],
    ["with a choice that is not an object", JSON.stringify({ choices: ["Hi"] }), "no choices[0]"],
    ["without a message", JSON.stringify({ choices: [{ finish_reason: "stop" }] }), "choices[0].message is missing"],
    ["with a message that is a list", answer([{ content: "Hi" }]), "choices[0].message is missing"],
    [
      "with content that is not a string",
      answer({ role: "assistant", content: 42 }),
      "choices[0].message.content is not a string",
    ],
    [
      "with content that is an object",
      answer({ role: "assistant", content: { text: "Hi" } }),
      "choices[0].message.content is not a string",
    ],
  ])("refuses an answer %s", (_what, text, why) => {
    const error = thrown(() => parseAnswer(text, "remote"));
    expect(error).toBeInstanceOf(UpstreamInvalidResponseError);
    expect((error as Error).message).toBe(`Backend 'remote' sent an invalid response: ${why}`);
  });

  it("accepts nesting up to the limit", () => {
    const text = answer(
      { role: "assistant", content: "Hi" },
      { extra: JSON.parse(nested(MAX_JSON_DEPTH - 4)) as unknown },
    );
    expect(parseAnswer(text, "remote").message.content).toBe("Hi");
  });
});

describe("parseStreamEvent", () => {
  it("reads the delta and finish reason of choices[0], and usage, as one event", () => {
    const data = JSON.stringify({
      choices: [{ delta: { content: "Hi" }, finish_reason: "stop" }],
      usage: { prompt_tokens: 2, completion_tokens: 1 },
    });
    expect(events(data)).toEqual([
      {
        delta: { content: "Hi" },
        finishReason: "stop",
        usage: { prompt_tokens: 2, completion_tokens: 1, total_tokens: 3 },
      },
    ]);
  });

  it("is nothing for an empty delta, a null delta, an empty finish reason or an empty choices list", () => {
    expect(events(JSON.stringify({ choices: [{ delta: {}, finish_reason: null }] }))).toEqual([]);
    expect(events(JSON.stringify({ choices: [{ delta: null, finish_reason: "" }] }))).toEqual([]);
    expect(events(JSON.stringify({ choices: [] }))).toEqual([]);
  });

  it("is usage alone from the last event of an include_usage stream", () => {
    expect(
      events(JSON.stringify({ choices: [], usage: { prompt_tokens: 2, completion_tokens: 5, total_tokens: 7 } })),
    ).toEqual([{ usage: { prompt_tokens: 2, completion_tokens: 5, total_tokens: 7 } }]);
  });

  it.each([
    ["that is not JSON", "{oops", "a stream event is not JSON"],
    ["that is a list", "[1,2]", "a stream event is not a JSON object"],
    ["that is a string", '"Hi"', "a stream event is not a JSON object"],
    ["that is null", "null", "a stream event is not a JSON object"],
    [
      "that is nested too deep",
      JSON.stringify({ choices: [], extra: JSON.parse(nested(MAX_JSON_DEPTH + 1)) as unknown }),
      `a stream event is nested more than ${MAX_JSON_DEPTH} levels deep`,
    ],
    [
      "with a delta that is a string",
      JSON.stringify({ choices: [{ delta: "Hi" }] }),
      "choices[0].delta is not an object",
    ],
    [
      "with a delta that is a list",
      JSON.stringify({ choices: [{ delta: ["Hi"] }] }),
      "choices[0].delta is not an object",
    ],
    ["without choices", JSON.stringify({ id: "x" }), "a stream event has no choices"],
  ])("refuses an event %s", (_what, data, why) => {
    const error = thrown(() => events(data));
    expect(error).toBeInstanceOf(UpstreamInvalidResponseError);
    expect((error as Error).message).toBe(`Backend 'remote' sent an invalid response: ${why}`);
  });

  it("fails the stream on an error event, with the upstream's message", () => {
    for (const [type, data] of [
      ["error", JSON.stringify({ message: "overloaded" })],
      [undefined, JSON.stringify({ error: { message: "overloaded", type: "server_error" } })],
    ] as const) {
      const error = thrown(() => events(data, type));
      expect(error).toBeInstanceOf(UpstreamStreamError);
      expect((error as Error).message).toBe("Backend 'remote' broke off its stream: overloaded");
    }
  });

  it("redacts the backend's key where an error event quotes it", () => {
    const key = "sk-test-0123456789abcdef";
    const error = thrown(() =>
      events(JSON.stringify({ error: { message: `Incorrect API key provided: ${key}.` } }), undefined, key),
    );
    expect(error).toBeInstanceOf(UpstreamStreamError);
    expect((error as Error).message).toBe(
      "Backend 'remote' broke off its stream: Incorrect API key provided: [redacted].",
    );
  });
});

describe("firstChoice", () => {
  it("is choices[0] when that is an object, else undefined", () => {
    expect(firstChoice({ choices: [{ index: 0 }, { index: 1 }] })).toEqual({ index: 0 });
    for (const body of [null, "x", {}, { choices: {} }, { choices: [] }, { choices: [null] }, { choices: [3] }])
      expect(firstChoice(body)).toBeUndefined();
  });
});

describe("upstreamErrorMessage", () => {
  it("takes the message of an OpenAI-style body, a bare error string, or a top-level message", () => {
    expect(
      upstreamErrorMessage(JSON.stringify({ error: { message: "bad model", type: "invalid_request_error" } }), 400),
    ).toBe("bad model");
    expect(upstreamErrorMessage(JSON.stringify({ error: "bad model" }), 400)).toBe("bad model");
    expect(upstreamErrorMessage(JSON.stringify({ message: "bad model" }), 400)).toBe("bad model");
  });

  it("takes text that is not JSON as it is, trimmed", () => {
    expect(upstreamErrorMessage("  Bad Gateway\n", 502)).toBe("Bad Gateway");
  });

  it("falls back to the status when there is nothing to quote", () => {
    for (const text of ["", "   ", "{}", JSON.stringify({ error: { code: 5 } }), JSON.stringify({ error: "" }), "null"])
      expect(upstreamErrorMessage(text, 503)).toBe("HTTP 503");
  });
});

describe("quoteUpstreamError", () => {
  it("redacts the key and cuts the message to 300 characters", () => {
    const key = "sk-test-0123456789abcdef";
    expect(quoteUpstreamError(JSON.stringify({ error: { message: `bad key ${key}` } }), 401, key)).toBe(
      "bad key [redacted]",
    );
    const quoted = quoteUpstreamError("x".repeat(5000), 502, undefined);
    expect(quoted).toBe(`${"x".repeat(300)}…`);
  });
});

describe("parseEmbeddings", () => {
  it("passes the answer's fields through, with usage when it counts tokens", () => {
    const text = JSON.stringify({
      object: "list",
      data: [{ object: "embedding", index: 0, embedding: [0.1, 0.2] }],
      model: "text-embedding-3-small",
      usage: { prompt_tokens: 3, total_tokens: 3 },
      extra: "kept",
    });
    expect(parseEmbeddings(text, "remote")).toEqual(JSON.parse(text));
  });

  it("drops a usage that is not counts, and fills total_tokens from prompt_tokens", () => {
    const data = [{ object: "embedding", index: 0, embedding: "AAAA" }];
    expect(parseEmbeddings(JSON.stringify({ data, usage: { prompt_tokens: -1 } }), "remote")).toEqual({ data });
    expect(parseEmbeddings(JSON.stringify({ data, usage: { prompt_tokens: 2 } }), "remote")).toEqual({
      data,
      usage: { prompt_tokens: 2, total_tokens: 2 },
    });
  });

  it.each([
    ["not JSON", "{", "body is not JSON"],
    ["not an object", "[1]", "body is not a JSON object"],
    ["without data", JSON.stringify({ object: "list" }), "no data array"],
    ["nested too deep", `{"data":[],"x":${"[".repeat(200)}${"]".repeat(200)}}`, "nested more than"],
  ])("refuses an answer %s", (_what, text, message) => {
    expect(() => parseEmbeddings(text, "remote")).toThrow(UpstreamInvalidResponseError);
    expect(() => parseEmbeddings(text, "remote")).toThrow(message);
  });
});

describe("choices past the first (n > 1)", () => {
  it("parseAnswer reads every choice, the ones after the first in `more`", () => {
    const body = {
      choices: [
        { index: 0, message: { role: "assistant", content: "a" }, finish_reason: "stop" },
        { index: 1, message: { role: "assistant", content: "b" }, finish_reason: "length" },
      ],
    };
    const answer = parseAnswer(JSON.stringify(body), "b");
    expect(answer.message.content).toBe("a");
    expect(answer.more).toEqual([{ message: { role: "assistant", content: "b" }, finishReason: "length" }]);
    const broken = { choices: [body.choices[0], { index: 1, message: "no" }] };
    expect(thrown(() => parseAnswer(JSON.stringify(broken), "b"))).toMatchObject({
      message: expect.stringContaining("choices[1].message is missing"),
    });
  });

  it("parseStreamEvent keeps a choice's index, and carries further choices of one event in `also`", () => {
    const one = parseStreamEvent(undefined, JSON.stringify({ choices: [{ index: 2, delta: { content: "x" } }] }), "b");
    expect(one).toMatchObject({ delta: { content: "x" }, index: 2 });
    const two = parseStreamEvent(
      undefined,
      JSON.stringify({
        choices: [
          { index: 0, delta: { content: "x" } },
          { index: 1, finish_reason: "stop" },
        ],
      }),
      "b",
    );
    expect(two?.index).toBeUndefined();
    expect(two?.also).toEqual([{ delta: undefined, finishReason: "stop", index: 1 }]);
  });

  it.each([-1, 1.5, "1", 128])("refuses a choice index of %p", (index) => {
    const data = JSON.stringify({ choices: [{ index, delta: { content: "x" } }] });
    expect(thrown(() => parseStreamEvent(undefined, data, "b"))).toBeInstanceOf(UpstreamInvalidResponseError);
  });
});

describe("text completions", () => {
  it("parseTextAnswer reads every choice's text, logprobs and finish reason, and usage", () => {
    const body = {
      choices: [
        { text: "a", index: 0, logprobs: null, finish_reason: "stop" },
        { text: null, index: 1, logprobs: { tokens: ["b"] } },
      ],
      usage: { prompt_tokens: 1, completion_tokens: 2, total_tokens: 3 },
    };
    expect(parseTextAnswer(JSON.stringify(body), "b")).toEqual({
      choices: [
        { text: "a", logprobs: null, finishReason: "stop" },
        { text: "", logprobs: { tokens: ["b"] }, finishReason: "stop" },
      ],
      usage: { prompt_tokens: 1, completion_tokens: 2, total_tokens: 3 },
    });
  });

  it.each([
    ["no choices", {}, "no choices[0]"],
    ["a choice that is not an object", { choices: [3] }, "choices[0] is not an object"],
    ["a text that is not a string", { choices: [{ text: 3 }] }, "choices[0].text is not a string"],
  ])("parseTextAnswer refuses %s", (_what, body, message) => {
    expect(thrown(() => parseTextAnswer(JSON.stringify(body), "b"))).toMatchObject({
      message: expect.stringContaining(message),
    });
  });

  it("parseTextStreamEvent makes each choice's delta {text} (with logprobs when sent)", () => {
    const data = JSON.stringify({ choices: [{ text: "hi", index: 0, logprobs: null, finish_reason: null }] });
    expect(parseTextStreamEvent(undefined, data, "b")).toMatchObject({ delta: { text: "hi" } });
    const withLogprobs = JSON.stringify({ choices: [{ text: "", logprobs: { x: 1 }, finish_reason: "stop" }] });
    expect(parseTextStreamEvent(undefined, withLogprobs, "b")).toMatchObject({
      delta: { text: "", logprobs: { x: 1 } },
      finishReason: "stop",
    });
    expect(parseTextStreamEvent(undefined, JSON.stringify({ choices: [{ text: "" }] }), "b")).toBeUndefined();
    expect(
      thrown(() => parseTextStreamEvent(undefined, JSON.stringify({ choices: [{ text: 1 }] }), "b")),
    ).toBeInstanceOf(UpstreamInvalidResponseError);
  });
});

describe("responses", () => {
  it("parseResponse passes any JSON object through, and refuses anything else", () => {
    expect(parseResponse('{"id":"resp_1","output":[]}', "b")).toEqual({ id: "resp_1", output: [] });
    expect(thrown(() => parseResponse("[1]", "b"))).toBeInstanceOf(UpstreamInvalidResponseError);
    expect(thrown(() => parseResponse("{", "b"))).toBeInstanceOf(UpstreamInvalidResponseError);
  });

  it("parseResponseEvent takes a JSON object with a type as it is", () => {
    const data = '{"type":"response.output_text.delta","delta":"x","sequence_number":4}';
    expect(parseResponseEvent("response.output_text.delta", data, "b")).toEqual(JSON.parse(data));
  });

  it.each([
    ["not JSON", '{"type": "response.output_text.delta", "delta": '],
    ["not an object", '["response.created"]'],
    ["without a type", '{"delta":"x"}'],
    ["with an empty type", '{"type":""}'],
  ])("parseResponseEvent refuses an event %s", (_what, data) => {
    expect(thrown(() => parseResponseEvent(undefined, data, "b"))).toBeInstanceOf(UpstreamInvalidResponseError);
  });

  it("parseResponseEvent fails the stream on an error event, its key redacted", () => {
    const data = '{"type":"error","code":"x","message":"Incorrect API key provided: sk-secret","param":null}';
    const error = thrown(() => parseResponseEvent("error", data, "b", "sk-secret"));
    expect(error).toBeInstanceOf(UpstreamStreamError);
    expect(String((error as Error).message)).not.toContain("sk-secret");
    expect(String((error as Error).message)).toContain("Incorrect API key");
  });
});

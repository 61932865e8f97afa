import { checkChatRequest } from "../../../gateway/src/api/v1/chat-request";

const user = [{ role: "user", content: "Hello" }];

/** The first failure as `[param, message]`, or undefined for a request the gateway accepts. */
function problem(body: unknown): [string | null, string] | undefined {
  const error = checkChatRequest(body);
  return error === undefined ? undefined : [error.param, error.message];
}

describe("checkChatRequest", () => {
  it.each<[string, unknown]>([
    ["a minimal request", { messages: user }],
    [
      "every checked field at a valid value",
      {
        model: "m",
        messages: user,
        stream: true,
        stream_options: { include_usage: true },
        n: 128,
        temperature: 2,
        top_p: 0,
        max_tokens: 1,
        max_completion_tokens: 10_000_000,
      },
    ],
    [
      "nulls for the optional fields",
      {
        messages: user,
        stream: null,
        stream_options: null,
        n: null,
        temperature: null,
        top_p: null,
        max_tokens: null,
        max_completion_tokens: null,
      },
    ],
    [
      "content parts",
      {
        messages: [
          {
            role: "user",
            content: [
              { type: "text", text: "a" },
              { type: "image_url", image_url: { url: "x" } },
            ],
          },
        ],
      },
    ],
    [
      "assistant, tool and function turns without content",
      { messages: [{ role: "assistant", content: null }, { role: "tool" }, { role: "function" }, ...user] },
    ],
    ["unknown fields, which pass through to the backend", { messages: user, top_k: 40, tools: [] }],
    ["a 256-character model", { model: "m".repeat(256), messages: user }],
    ["a model of 200 emoji (400 UTF-16 units, counted as 200 characters)", { model: "😀".repeat(200), messages: user }],
  ])("accepts %s", (_what, body) => {
    expect(problem(body)).toBeUndefined();
  });

  it.each<[string, unknown, string | null, string]>([
    ["an array body", [1], null, "The request body must be a JSON object"],
    ["a null body", null, null, "The request body must be a JSON object"],
    ["a model that is not a string", { model: 7, messages: user }, "model", "model must be a string"],
    ["a null model", { model: null, messages: user }, "model", "model must be a string"],
    ["an empty model", { model: "", messages: user }, "model", "model must be 1 to 256 characters"],
    ["a 257-character model", { model: "m".repeat(257), messages: user }, "model", "model must be 1 to 256 characters"],
    ["missing messages", {}, "messages", "messages is required"],
    ["null messages", { messages: null }, "messages", "messages is required"],
    ["empty messages", { messages: [] }, "messages", "messages must be a non-empty array"],
    ["messages that is an object", { messages: { 0: user[0] } }, "messages", "messages must be a non-empty array"],
    ["a message that is not an object", { messages: [...user, "hi"] }, "messages[1]", "each message must be an object"],
    [
      "an unknown role",
      { messages: [{ role: "robot", content: "x" }] },
      "messages[0].role",
      "role must be one of system, developer, user, assistant, tool, function",
    ],
    [
      "a missing role",
      { messages: [{ content: "x" }] },
      "messages[0].role",
      "role must be one of system, developer, user, assistant, tool, function",
    ],
    [
      "a role given as an array",
      { messages: [{ role: ["user"], content: "x" }] },
      "messages[0].role",
      "role must be one of system, developer, user, assistant, tool, function",
    ],
    [
      "user content missing",
      { messages: [{ role: "user" }] },
      "messages[0].content",
      "messages[0].content is required",
    ],
    [
      "system content null",
      { messages: [{ role: "system", content: null }] },
      "messages[0].content",
      "messages[0].content is required",
    ],
    [
      "content of the wrong type",
      { messages: [{ role: "user", content: 5 }] },
      "messages[0].content",
      "messages[0].content must be a string or an array of content parts",
    ],
    [
      "a content part without a type",
      { messages: [{ role: "user", content: [{ text: "x" }] }] },
      "messages[0].content",
      "messages[0].content[0] must be an object with a string 'type'",
    ],
    [
      "a text part without text",
      { messages: [{ role: "user", content: [{ type: "text", text: 1 }] }] },
      "messages[0].content",
      "messages[0].content[0].text must be a string",
    ],
    ["a stream flag that is not a boolean", { messages: user, stream: "yes" }, "stream", "stream must be a boolean"],
    [
      "stream_options that is not an object",
      { messages: user, stream_options: [] },
      "stream_options",
      "stream_options must be an object",
    ],
    [
      "include_usage that is not a boolean",
      { messages: user, stream_options: { include_usage: 1 } },
      "stream_options.include_usage",
      "stream_options.include_usage must be a boolean",
    ],
    ["n of 0", { messages: user, n: 0 }, "n", "n must be an integer from 1 to 128"],
    ["n past 128", { messages: user, n: 129 }, "n", "n must be an integer from 1 to 128"],
    ["a fractional n", { messages: user, n: 1.5 }, "n", "n must be an integer from 1 to 128"],
    ["n as a string", { messages: user, n: "2" }, "n", "n must be an integer from 1 to 128"],
    [
      "a temperature above 2",
      { messages: user, temperature: 2.5 },
      "temperature",
      "temperature must be a number from 0 to 2",
    ],
    [
      "a temperature given as a string",
      { messages: user, temperature: "1" },
      "temperature",
      "temperature must be a number from 0 to 2",
    ],
    ["a negative top_p", { messages: user, top_p: -0.1 }, "top_p", "top_p must be a number from 0 to 1"],
    [
      "a fractional max_tokens",
      { messages: user, max_tokens: 1.5 },
      "max_tokens",
      "max_tokens must be an integer from 1 to 10000000",
    ],
    [
      "a zero max_completion_tokens",
      { messages: user, max_completion_tokens: 0 },
      "max_completion_tokens",
      "max_completion_tokens must be an integer from 1 to 10000000",
    ],
  ])("refuses %s", (_what, body, param, message) => {
    expect(problem(body)).toEqual([param, message]);
  });

  it.each<[string, unknown, string | null]>([
    ["the body before anything else", "text", null],
    ["model before messages", { model: 1 }, "model"],
    ["every message's shape before any role", { messages: [{ role: "robot" }, 5] }, "messages[1]"],
    [
      "every role before any content",
      { messages: [{ role: "user" }, { role: "robot", content: "x" }] },
      "messages[1].role",
    ],
    ["messages before the optional fields", { messages: [{ role: "user" }], temperature: 9 }, "messages[0].content"],
    ["stream before n and the numbers", { messages: user, stream: 1, n: 2, temperature: 9 }, "stream"],
    [
      "temperature before top_p and the token limits",
      { messages: user, temperature: 9, top_p: 9, max_tokens: 0 },
      "temperature",
    ],
  ])("reports the first failure in a fixed order: %s", (_what, body, param) => {
    expect(problem(body)?.[0]).toBe(param);
  });

  it("answers with a 400 invalid_value error", () => {
    expect(checkChatRequest({})).toMatchObject({ status: 400, type: "invalid_request_error", code: "invalid_value" });
  });
});

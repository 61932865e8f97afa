import { checkCompletionsRequest } from "../../../gateway/src/api/v1/completions-request";
import { checkResponsesRequest } from "../../../gateway/src/api/v1/responses-request";

function problem(check: (body: unknown) => { param: string | null; message: string } | undefined, body: unknown) {
  const error = check(body);
  return error === undefined ? undefined : [error.param, error.message];
}

describe("checkCompletionsRequest", () => {
  it.each<[string, unknown]>([
    ["a string prompt", { prompt: "Hi" }],
    ["strings", { prompt: ["a", "b"], model: "m", n: 2, stream: true, stream_options: { include_usage: true } }],
    ["token ids", { prompt: [1, 2, 3], max_tokens: 0 }],
    ["token id arrays", { prompt: [[1], [2, 3]], temperature: 2, echo: true, suffix: "x" }],
  ])("accepts %s", (_what, body) => {
    expect(problem(checkCompletionsRequest, body)).toBeUndefined();
  });

  it.each<[string, unknown, string | null, string]>([
    ["a body that is not an object", [1], null, "The request body must be a JSON object"],
    ["no prompt", { model: "m" }, "prompt", "prompt is required"],
    [
      "an empty prompt list",
      { prompt: [] },
      "prompt",
      "prompt must be a string, an array of strings, an array of token ids, or an array of token id arrays",
    ],
    [
      "a mixed prompt list",
      { prompt: ["a", 1] },
      "prompt",
      "prompt must be a string, an array of strings, an array of token ids, or an array of token id arrays",
    ],
    ["a model that is not a string", { prompt: "a", model: 3 }, "model", "model must be a string"],
    ["stream as a string", { prompt: "a", stream: "yes" }, "stream", "stream must be a boolean"],
    ["n of 0", { prompt: "a", n: 0 }, "n", "n must be an integer from 1 to 128"],
  ])("refuses %s", (_what, body, param, message) => {
    expect(problem(checkCompletionsRequest, body)).toEqual([param, message]);
  });
});

describe("checkResponsesRequest", () => {
  it.each<[string, unknown]>([
    ["a string input", { model: "m", input: "Hi" }],
    ["items", { input: [{ role: "user", content: [{ type: "input_text", text: "Hi" }] }], stream: true }],
    ["no input (a stored prompt, say)", { prompt: { id: "p" } }],
    ["a previous response", { input: "Hi", previous_response_id: "resp_1", store: true, tools: [] }],
  ])("accepts %s", (_what, body) => {
    expect(problem(checkResponsesRequest, body)).toBeUndefined();
  });

  it.each<[string, unknown, string | null, string]>([
    ["a body that is not an object", "Hi", null, "The request body must be a JSON object"],
    ["an input that is a number", { input: 3 }, "input", "input must be a string or an array of items"],
    ["an item that is not an object", { input: ["Hi"] }, "input[0]", "each input item must be an object"],
    ["stream as a number", { input: "Hi", stream: 1 }, "stream", "stream must be a boolean"],
    [
      "a previous response id that is not a string",
      { input: "Hi", previous_response_id: 3 },
      "previous_response_id",
      "previous_response_id must be a string",
    ],
    [
      "max_output_tokens of 0",
      { input: "Hi", max_output_tokens: 0 },
      "max_output_tokens",
      "max_output_tokens must be an integer from 1 to 10000000",
    ],
  ])("refuses %s", (_what, body, param, message) => {
    expect(problem(checkResponsesRequest, body)).toEqual([param, message]);
  });
});

import { checkEmbeddingsRequest, MAX_EMBEDDING_INPUTS } from "../../../gateway/src/api/v1/embeddings-request";
import { embeddingTexts } from "../../../gateway/src/utils/prompt";

const problem = (body: unknown) => {
  const error = checkEmbeddingsRequest(body);
  return error === undefined ? undefined : [error.param, error.message];
};

describe("checkEmbeddingsRequest", () => {
  it.each([
    ["a string", "hello"],
    ["strings", ["a", "b"]],
    ["token ids", [1, 2, 3]],
    ["arrays of token ids", [[1, 2], [3]]],
  ])("accepts %s as input, and lets unknown fields through", (_what, input) => {
    expect(problem({ model: "m", input, user: "u", extra: { any: 1 } })).toBeUndefined();
  });

  it.each([
    [null, [null, "The request body must be a JSON object"]],
    [{}, ["input", "input is required"]],
    [{ input: 5 }, ["input", expect.stringContaining("input must be a string")]],
    [{ input: [[1, -2]] }, ["input", expect.stringContaining("input must be a string")]],
    [{ input: [[]] }, ["input", expect.stringContaining("input must be a string")]],
    [{ input: [1.5] }, ["input", expect.stringContaining("input must be a string")]],
    [{ input: "x", dimensions: 1.5 }, ["dimensions", expect.stringContaining("dimensions must be an integer")]],
    [{ input: "x", dimensions: 100_000 }, ["dimensions", expect.stringContaining("dimensions must be an integer")]],
    [{ input: "x", model: "" }, ["model", expect.stringContaining("model must be 1 to")]],
  ])("refuses %j", (body, expected) => {
    expect(problem(body)).toEqual(expected);
  });

  it(`takes at most ${MAX_EMBEDDING_INPUTS} inputs`, () => {
    expect(problem({ input: Array.from({ length: MAX_EMBEDDING_INPUTS }, () => "x") })).toBeUndefined();
    expect(problem({ input: Array.from({ length: MAX_EMBEDDING_INPUTS + 1 }, () => "x") })).toEqual([
      "input",
      `input must have at most ${MAX_EMBEDDING_INPUTS} items`,
    ]);
  });

  it("reads the inputs as texts: token ids joined", () => {
    expect(embeddingTexts("a b")).toEqual(["a b"]);
    expect(embeddingTexts(["a", "b"])).toEqual(["a", "b"]);
    expect(embeddingTexts([1, 2])).toEqual(["1 2"]);
    expect(embeddingTexts([[1, 2], [3]])).toEqual(["1 2", "3"]);
  });
});

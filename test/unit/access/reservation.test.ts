import { tokensToReserve } from "../../../gateway/src/access/reservation";

describe("tokensToReserve", () => {
  it("is the completion's bound plus the messages' text at four characters per token", () => {
    const body = {
      max_tokens: 100,
      messages: [
        { role: "system", content: "x".repeat(40) },
        { role: "user", content: [{ type: "text", text: "y".repeat(41) }, { type: "image_url" }] },
      ],
    };
    expect(tokensToReserve(body)).toBe(100 + Math.ceil(81 / 4));
  });

  it("prefers max_completion_tokens to max_tokens, and reserves no completion without either", () => {
    const messages = [{ role: "user", content: "abcd" }];
    expect(tokensToReserve({ max_completion_tokens: 7, max_tokens: 100, messages })).toBe(8);
    expect(tokensToReserve({ messages })).toBe(1);
  });

  it("counts whatever is malformed as nothing (validation refuses it next)", () => {
    expect(tokensToReserve(null)).toBe(0);
    expect(tokensToReserve("text")).toBe(0);
    expect(tokensToReserve({ max_tokens: -5, messages: "no" })).toBe(0);
    expect(
      tokensToReserve({ max_tokens: 1.5, messages: [null, 3, { content: 5 }, { content: [null, { text: 1 }] }] }),
    ).toBe(0);
  });
});

describe("tokensToReserve: embeddings", () => {
  it("counts an embeddings input: texts at ~4 characters per token, token ids one each", () => {
    expect(tokensToReserve({ input: "x".repeat(40) })).toBe(10);
    expect(tokensToReserve({ input: ["x".repeat(8), "y".repeat(8)] })).toBe(4);
    expect(tokensToReserve({ input: [1, 2, 3] })).toBe(3);
    expect(
      tokensToReserve({
        input: [
          [1, 2],
          [3, 4, 5],
        ],
      }),
    ).toBe(5);
  });

  it("reserves the completion bound once per choice (n)", () => {
    expect(tokensToReserve({ max_tokens: 10, n: 3, messages: [{ role: "user", content: "abcd" }] })).toBe(31);
  });

  it("counts a legacy completion's prompt and a Responses input, with max_output_tokens as the bound", () => {
    expect(tokensToReserve({ max_tokens: 5, prompt: "x".repeat(8) })).toBe(7);
    expect(tokensToReserve({ prompt: [[1, 2, 3], [4]] })).toBe(4);
    expect(tokensToReserve({ max_output_tokens: 20, input: "x".repeat(12) })).toBe(23);
    const items = [{ role: "user", content: [{ type: "input_text", text: "y".repeat(8) }] }];
    expect(tokensToReserve({ max_output_tokens: 20, input: items })).toBe(22);
  });
});

import { ECHO_DIMENSIONS, echoBackendFactory, unitVector } from "../../../gateway/src/backends/echo";
import { ResponseBudget } from "../../../gateway/src/backends/response-budget";
import { createLogger } from "../../../gateway/src/observability/logger";

const norm = (vector: ArrayLike<number>) =>
  Math.sqrt(Array.from(vector).reduce((sum, value) => sum + value * value, 0));

describe("echo embeddings", () => {
  it("makes a unit vector fixed by the text", () => {
    const a = unitVector("hello", 32);
    expect(a).toHaveLength(32);
    expect(norm(a)).toBeCloseTo(1, 5);
    expect(unitVector("hello", 32)).toEqual(a);
    expect(unitVector("hellp", 32)).not.toEqual(a);
    expect(norm(unitVector("", 3))).toBeCloseTo(1, 5);
  });

  it("answers one vector per input, float or base64, with usage", async () => {
    const backend = echoBackendFactory.create(
      "local",
      {},
      { env: {}, logger: createLogger({ level: "error", service: "test" }), responseBudget: new ResponseBudget(1024) },
    );
    const call = { prompt: "", requestId: "r", signal: new AbortController().signal };
    const floats = await backend.embed?.({ ...call, request: { input: ["a b", "c"] } });
    expect(floats?.data).toHaveLength(2);
    expect((floats?.data[0] as { embedding: number[] }).embedding).toHaveLength(ECHO_DIMENSIONS);
    expect(floats?.usage).toEqual({ prompt_tokens: 3, total_tokens: 3 });
    const encoded = await backend.embed?.({
      ...call,
      request: { input: "a b", encoding_format: "base64", dimensions: 4 },
    });
    const bytes = Buffer.from((encoded?.data[0] as { embedding: string }).embedding, "base64");
    expect(Array.from(new Float32Array(bytes.buffer, bytes.byteOffset, 4))).toEqual(Array.from(unitVector("a b", 4)));
  });
});

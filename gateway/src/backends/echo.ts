import { singleTarget, type TargetPool } from "../balancing/pool";
import type { CompletionsRequest } from "../schemas/completions";
import type { EmbeddingsRequest } from "../schemas/embeddings";
import type { ResponseEvent, ResponsesRequest } from "../schemas/responses";
import { hash32 } from "../utils/hash";
import { embeddingTexts } from "../utils/prompt";
import { countTokens } from "../utils/tokens";
import type {
  Backend,
  BackendCall,
  BackendContext,
  BackendFactory,
  BackendResult,
  EmbeddingsResult,
  ResponseResult,
  StreamEvent,
  TextResult,
} from "./backend";
import { EchoResponse } from "./echo-responses";

/** The length of echo's vectors when the request gives no `dimensions`. */
export const ECHO_DIMENSIONS = 64;

/** Answers `Echo: {prompt}` without leaving the process: for wiring checks, demos and benchmarks. */
class EchoBackend implements Backend {
  readonly type = "echo";
  readonly target = "in-process";

  readonly pool: TargetPool;

  constructor(
    readonly name: string,
    context: Pick<BackendContext, "circuitBreaker">,
  ) {
    this.pool = singleTarget(context.circuitBreaker);
  }

  /** With `n` > 1, n identical choices. */
  async complete(call: BackendCall): Promise<BackendResult> {
    const message = { role: "assistant" as const, content: answer(call) };
    const n = call.request.n ?? 1;
    if (n === 1) return { message, finishReason: "stop" };
    return {
      message,
      finishReason: "stop",
      more: Array.from({ length: n - 1 }, () => ({ message, finishReason: "stop" })),
    };
  }

  /** Word by word, as a model would stream it: "Echo:", " Hello", " world"; with `n` > 1, each word for every choice. */
  async *stream(call: BackendCall): AsyncGenerator<StreamEvent> {
    const words = answer(call).split(" ");
    const n = call.request.n ?? 1;
    for (let index = 0; index < n; index++)
      yield { delta: { role: "assistant", content: words[0] ?? "" }, ...at(index) };
    for (let word = 1; word < words.length; word++)
      for (let index = 0; index < n; index++) yield { delta: { content: ` ${words[word] ?? ""}` }, ...at(index) };
    for (let index = 0; index < n; index++) yield { finishReason: "stop", ...at(index) };
  }

  /** `Echo: {prompt}` as a legacy text completion, n identical choices. */
  async completeText(call: BackendCall<CompletionsRequest>): Promise<TextResult> {
    const choice = { text: answer(call), logprobs: null, finishReason: "stop" };
    return { choices: Array.from({ length: call.request.n ?? 1 }, () => choice) };
  }

  /** The same, word by word, each word for every choice. */
  async *streamText(call: BackendCall<CompletionsRequest>): AsyncGenerator<StreamEvent> {
    const words = answer(call).split(" ");
    const n = call.request.n ?? 1;
    for (let word = 0; word < words.length; word++)
      for (let index = 0; index < n; index++)
        yield { delta: { text: word === 0 ? (words[0] ?? "") : ` ${words[word] ?? ""}` }, ...at(index) };
    for (let index = 0; index < n; index++) yield { finishReason: "stop", ...at(index) };
  }

  /** A minimal Response: one `output_text` reading `Echo: {input}`. */
  async respond(call: BackendCall<ResponsesRequest>): Promise<ResponseResult> {
    return this.echoResponse(call).response();
  }

  /** The same Response as the event sequence a model's stream would be. */
  async *streamResponse(call: BackendCall<ResponsesRequest>): AsyncGenerator<ResponseEvent> {
    yield* this.echoResponse(call).events();
  }

  private echoResponse(call: BackendCall<ResponsesRequest>): EchoResponse {
    const previous = call.request.previous_response_id;
    return new EchoResponse(call.request.model ?? this.name, call.prompt, answer(call), previous ?? null);
  }

  /** One unit vector per input, fixed by its text: the same text always gets the same vector. */
  async embed(call: BackendCall<EmbeddingsRequest>): Promise<EmbeddingsResult> {
    const texts = embeddingTexts(call.request.input);
    const dimensions = call.request.dimensions ?? ECHO_DIMENSIONS;
    const base64 = call.request.encoding_format === "base64";
    const data = texts.map((text, index) => {
      const vector = unitVector(text, dimensions);
      return {
        object: "embedding",
        index,
        embedding: base64 ? Buffer.from(vector.buffer).toString("base64") : Array.from(vector),
      };
    });
    const tokens = texts.reduce((sum, text) => sum + countTokens(text), 0);
    return { object: "list", data, usage: { prompt_tokens: tokens, total_tokens: tokens } };
  }

  async close(): Promise<void> {}
}

/**
 * A vector of `dimensions` float32s drawn from a generator seeded by the text's hash (mulberry32), scaled to
 * length 1. Float32, so the float and base64 answers carry exactly the same numbers.
 */
export function unitVector(text: string, dimensions: number): Float32Array {
  const vector = new Float32Array(dimensions);
  let state = hash32(text);
  let length = 0;
  for (let index = 0; index < dimensions; index++) {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    const value = (((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1;
    vector[index] = value;
    length += value * value;
  }
  const scale = length === 0 ? 0 : 1 / Math.sqrt(length);
  for (let index = 0; index < dimensions; index++) vector[index] = (vector[index] ?? 0) * scale;
  return vector;
}

/** Which choice an event adds to: absent for 0, as a backend without `n` sends it. */
function at(index: number): { index?: number } {
  return index === 0 ? {} : { index };
}

function answer(call: BackendCall<unknown>): string {
  return `Echo: ${call.prompt}`;
}

export const echoBackendFactory: BackendFactory<Record<string, never>> = {
  type: "echo",
  parseOptions: () => ({}),
  create: (name, _options, context) => new EchoBackend(name, context),
};

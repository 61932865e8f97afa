import { randomUUID } from "node:crypto";
import type { Backend } from "../backends/backend";
import type { ChatCompletion, ChatCompletionRequest } from "../schemas/chat";
import { extractPrompt } from "../utils/prompt";
import { estimateUsage } from "../utils/tokens";

export interface CallOptions {
  readonly requestId: string;
  readonly signal: AbortSignal;
}

/** Picks the backend for a request and turns its answer into an OpenAI chat.completion. */
export class InferenceService {
  private readonly byName: ReadonlyMap<string, Backend>;

  constructor(
    readonly backends: readonly Backend[],
    private readonly defaultBackend: Backend,
  ) {
    this.byName = new Map(backends.map((backend) => [backend.name, backend]));
  }

  /** The backend named by `model`; a missing or unknown model goes to the default backend. */
  route(model: string | undefined): Backend {
    return (model === undefined ? undefined : this.byName.get(model)) ?? this.defaultBackend;
  }

  async complete(backend: Backend, request: ChatCompletionRequest, options: CallOptions): Promise<ChatCompletion> {
    const prompt = extractPrompt(request.messages);
    const result = await backend.complete({ request, prompt, requestId: options.requestId, signal: options.signal });
    return {
      id: randomUUID(),
      object: "chat.completion",
      created: Math.floor(Date.now() / 1000),
      model: request.model ?? backend.name,
      backend: backend.name,
      choices: [{ index: 0, message: result.message, finish_reason: result.finishReason, logprobs: null }],
      usage: result.usage ?? estimateUsage(prompt, result.message.content ?? ""),
    };
  }

  async close(): Promise<void> {
    await Promise.allSettled(this.backends.map((backend) => backend.close()));
  }
}

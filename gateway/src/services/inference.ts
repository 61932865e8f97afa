import { randomUUID } from "node:crypto";
import type { Backend, BackendResult } from "../backends/backend";
import type { BackendSeries, GatewayMetrics } from "../observability/metrics";
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
  /** Each backend's series, looked up by object so a request never builds label strings. */
  private readonly series: ReadonlyMap<Backend, BackendSeries>;

  constructor(
    readonly backends: readonly Backend[],
    private readonly defaultBackend: Backend,
    private readonly metrics: GatewayMetrics,
  ) {
    this.byName = new Map(backends.map((backend) => [backend.name, backend]));
    this.series = new Map(backends.map((backend) => [backend, metrics.backend(backend.name)]));
  }

  /** The backend named by `model`; a missing or unknown model goes to the default backend. */
  route(model: string | undefined): Backend {
    return (model === undefined ? undefined : this.byName.get(model)) ?? this.defaultBackend;
  }

  async complete(backend: Backend, request: ChatCompletionRequest, options: CallOptions): Promise<ChatCompletion> {
    const prompt = extractPrompt(request.messages);
    const series = this.series.get(backend) ?? this.metrics.backend(backend.name);
    const started = performance.now();
    series.callStarted();
    let result: BackendResult;
    try {
      result = await backend.complete({ request, prompt, requestId: options.requestId, signal: options.signal });
    } catch (error) {
      series.callEnded((performance.now() - started) / 1000, error);
      throw error;
    }
    series.callEnded((performance.now() - started) / 1000);
    const usage = result.usage ?? estimateUsage(prompt, result.message.content ?? "");
    series.countTokens(usage);
    return {
      id: randomUUID(),
      object: "chat.completion",
      created: Math.floor(Date.now() / 1000),
      model: request.model ?? backend.name,
      backend: backend.name,
      choices: [{ index: 0, message: result.message, finish_reason: result.finishReason, logprobs: null }],
      usage,
    };
  }

  async close(): Promise<void> {
    await Promise.allSettled(this.backends.map((backend) => backend.close()));
  }
}

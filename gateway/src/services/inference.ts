import { randomUUID } from "node:crypto";
import type { Backend, BackendCall, BackendResult, EmbeddingsResult, StreamEvent } from "../backends/backend";
import { BackendNotAllowedError, UnsupportedEndpointError } from "../errors";
import type { BackendSeries, GatewayMetrics } from "../observability/metrics";
import type { ChatCompletion, ChatCompletionRequest, Usage } from "../schemas/chat";
import type { EmbeddingsRequest, EmbeddingsResponse } from "../schemas/embeddings";
import { type PullStream, pullFrom } from "../utils/pull-stream";
import { embeddingTexts, extractPrompt } from "../utils/prompt";
import { countTokens, estimateUsage } from "../utils/tokens";
import { ChunkRelay, type ChunkStream } from "./chunk-relay";
import { type BaseCall, type RequestHooks, Resilience, type ResilienceSettings } from "./resilience";

/** What the service needs from the request: the API hands it the request's context (middleware/request-context.ts). */
export interface CallOptions extends RequestHooks {
  readonly requestId: string;
  readonly signal: AbortSignal;
  /** `performance.now()` when the request arrived, for time to first token. */
  readonly startedAt: number;
  /** The request's `x-gateway-hops` (0 when it came straight from a client). */
  readonly hops?: number;
  /** Told the tokens an answer used, once known (for per-key token limits). */
  readonly onUsage?: (usage: Usage) => void;
  /** Set when the request's API key may use only some backends: a request routed elsewhere is refused (403). */
  readonly allowlist?: { readonly key: string; readonly backends: ReadonlySet<string> };
  /** Told once the request passed every check and a streamed answer is about to be asked for. */
  readonly onStream?: () => void;
}

export interface InferenceSettings extends ResilienceSettings {
  /** Counts a request refused because its key may not use the routed backend (the access metrics). */
  readonly refusals?: { rejected(key: string, reason: "model_not_allowed"): void };
}

/** A stream whose first event is in hand: what a streamed "attempt" produces. */
interface OpenedStream {
  readonly events: PullStream<StreamEvent>;
  /** Undefined: the stream ended without any event. */
  readonly first: StreamEvent | undefined;
  readonly series: BackendSeries;
  readonly started: number;
}

/**
 * Picks the backend for a request, checks the request's key may use it, calls it (with its retries,
 * fallbacks and circuit breaker, see resilience.ts) and turns its answer into an OpenAI chat.completion or
 * chunk stream. The API calls completeChat or openChatStream; complete and openStream take a backend
 * already routed and allowed.
 */
export class InferenceService {
  private readonly byName: ReadonlyMap<string, Backend>;
  /** Each backend's series, looked up by object so a request never builds label strings. */
  private readonly series: ReadonlyMap<Backend, BackendSeries>;
  private readonly resilience: Resilience;
  private readonly refusals: InferenceSettings["refusals"];

  constructor(
    readonly backends: readonly Backend[],
    private readonly defaultBackend: Backend,
    private readonly metrics: GatewayMetrics,
    settings: InferenceSettings = {},
  ) {
    this.byName = new Map(backends.map((backend) => [backend.name, backend]));
    this.series = new Map(backends.map((backend) => [backend, metrics.backend(backend.name)]));
    this.resilience = new Resilience(backends, metrics, settings);
    this.refusals = settings.refusals;
  }

  /** The backend named by `model`; a missing or unknown model goes to the default backend. */
  route(model: string | undefined): Backend {
    return (model === undefined ? undefined : this.byName.get(model)) ?? this.defaultBackend;
  }

  /** A validated request's whole answer: routed by its `model`, refused (403) if its key may not use that backend. */
  async completeChat(request: ChatCompletionRequest, options: CallOptions): Promise<ChatCompletion> {
    return this.complete(this.routeAllowed(request, options), request, options);
  }

  /** As completeChat, streamed: see openStream. */
  async openChatStream(request: ChatCompletionRequest, options: CallOptions): Promise<ChunkStream> {
    const backend = this.routeAllowed(request, options);
    options.onStream?.();
    return this.openStream(backend, request, options);
  }

  /** The answer from `backend` (already routed and allowed), or from one of its fallbacks; `backend` in the result names which. */
  async complete(backend: Backend, request: ChatCompletionRequest, options: CallOptions): Promise<ChatCompletion> {
    const prompt = extractPrompt(request.messages);
    const answered = await this.resilience.call(
      backend,
      baseCall(request, prompt, options),
      options,
      "complete",
      (target, call) => this.completeOnce(target, call),
    );
    const result = answered.value;
    const usage = result.usage ?? estimateUsage(prompt, result.message.content ?? "");
    this.seriesOf(answered.backend).countTokens(usage);
    options.onUsage?.(usage);
    return {
      id: randomUUID(),
      object: "chat.completion",
      created: Math.floor(Date.now() / 1000),
      model: request.model ?? backend.name,
      backend: answered.backend.name,
      choices: [{ index: 0, message: result.message, finish_reason: result.finishReason, logprobs: null }],
      usage,
    };
  }

  /**
   * Starts a streamed answer and resolves once its first event is in hand, so that a backend failing
   * before it produced anything still becomes an ordinary HTTP error, or a retry, or a fallback.
   * What it resolves to yields the chunks to send; it throws a GatewayError if the stream breaks later.
   */
  async openStream(backend: Backend, request: ChatCompletionRequest, options: CallOptions): Promise<ChunkStream> {
    const prompt = extractPrompt(request.messages);
    const answered = await this.resilience.call(
      backend,
      baseCall(request, prompt, options),
      options,
      "start",
      (target, call) => this.openOnce(target, call),
    );
    const includeUsage = (request.stream_options as { include_usage?: unknown } | undefined)?.include_usage === true;
    return new ChunkRelay({
      ...answered.value,
      backend: answered.backend,
      model: request.model ?? backend.name,
      prompt,
      options,
      includeUsage,
      settle: answered.settle,
    });
  }

  /**
   * `POST /v1/embeddings`: routed and allowed as a chat request is, with the same retries, failover and
   * fallbacks. The backend's answer passes through with `backend` added, and `usage` counted (or estimated).
   */
  async embed(request: EmbeddingsRequest, options: CallOptions): Promise<EmbeddingsResponse> {
    const backend = this.routeAllowed(request, options);
    if (backend.embed === undefined) throw new UnsupportedEndpointError(backend.name, "embeddings");
    const prompt = embeddingTexts(request.input).join("\n");
    const answered = await this.resilience.call(
      backend,
      { request, prompt, requestId: options.requestId, signal: options.signal, hops: options.hops ?? 0 },
      options,
      "complete",
      (target, call) => this.timed(target, call, embedVia),
    );
    const result = answered.value;
    const tokens = result.usage?.prompt_tokens ?? countTokens(prompt);
    const usage = { prompt_tokens: tokens, total_tokens: result.usage?.total_tokens ?? tokens };
    const counted = { prompt_tokens: tokens, completion_tokens: 0, total_tokens: usage.total_tokens };
    this.seriesOf(answered.backend).countTokens(counted, "embeddings");
    options.onUsage?.(counted);
    return {
      ...result,
      object: "list",
      data: result.data as EmbeddingsResponse["data"],
      model: request.model ?? backend.name,
      backend: answered.backend.name,
      usage,
    };
  }

  async close(): Promise<void> {
    await Promise.allSettled(this.backends.map((backend) => backend.close()));
  }

  /** One call, timed and counted as a backend call; `run` is a module function, so no closure per call. */
  private async timed<C, T>(backend: Backend, call: C, run: (backend: Backend, call: C) => Promise<T>): Promise<T> {
    const series = this.seriesOf(backend);
    const started = performance.now();
    series.callStarted();
    let result: T;
    try {
      result = await run(backend, call);
    } catch (error) {
      series.callEnded((performance.now() - started) / 1000, error);
      throw error;
    }
    series.callEnded((performance.now() - started) / 1000);
    return result;
  }

  /** One call of `complete`, timed and counted as a backend call. */
  private completeOnce(backend: Backend, call: BackendCall): Promise<BackendResult> {
    return this.timed(backend, call, completeVia);
  }

  /** One try at a stream: done once its first event arrives. The call stays open (in flight) for relay. */
  private async openOnce(backend: Backend, call: BackendCall): Promise<OpenedStream> {
    const series = this.seriesOf(backend);
    const started = performance.now();
    series.callStarted();
    const events = pullFrom(backend.stream(call));
    try {
      return { events, first: await firstEvent(events), series, started };
    } catch (error) {
      series.callEnded((performance.now() - started) / 1000, error);
      throw error;
    }
  }

  private routeAllowed(request: { readonly model?: string }, options: CallOptions): Backend {
    const backend = this.route(request.model);
    const allowlist = options.allowlist;
    if (allowlist === undefined || allowlist.backends.has(backend.name)) return backend;
    this.refusals?.rejected(allowlist.key, "model_not_allowed");
    throw new BackendNotAllowedError(allowlist.key, backend.name);
  }

  private seriesOf(backend: Backend): BackendSeries {
    return this.series.get(backend) ?? this.metrics.backend(backend.name);
  }
}

const completeVia = (backend: Backend, call: BackendCall): Promise<BackendResult> => backend.complete(call);

async function embedVia(backend: Backend, call: BackendCall<EmbeddingsRequest>): Promise<EmbeddingsResult> {
  if (backend.embed === undefined) throw new UnsupportedEndpointError(backend.name, "embeddings");
  return backend.embed(call);
}

/** The stream's first event, taken; undefined if it ended with none. Throws what broke it first. */
async function firstEvent(events: PullStream<StreamEvent>): Promise<StreamEvent | undefined> {
  // Each turn waits for the backend to report something new.
  for (;;) {
    const event = events.take();
    if (event !== undefined || events.ended) return event;
    await events.wait();
  }
}

function baseCall(request: ChatCompletionRequest, prompt: string, options: CallOptions): BaseCall {
  return { request, prompt, requestId: options.requestId, signal: options.signal, hops: options.hops ?? 0 };
}

import { randomUUID } from "node:crypto";
import type {
  Backend,
  BackendCall,
  BackendResult,
  EmbeddingsResult,
  ResponseResult,
  StreamEvent,
  TextResult,
} from "../backends/backend";
import { BackendNotAllowedError, UnsupportedEndpointError } from "../errors";
import type { BackendSeries, Endpoint, GatewayMetrics } from "../observability/metrics";
import type { ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, Usage } from "../schemas/chat";
import type { CompletionsRequest, TextCompletion, TextCompletionChunk } from "../schemas/completions";
import type { EmbeddingsRequest, EmbeddingsResponse } from "../schemas/embeddings";
import type { ResponseEvent, ResponseObject, ResponsesRequest } from "../schemas/responses";
import { type PullStream, pullFrom } from "../utils/pull-stream";
import { completionPrompt, embeddingTexts, extractPrompt, responseInputText } from "../utils/prompt";
import { countTokens, estimateUsage, responseUsage } from "../utils/tokens";
import {
  CHAT_CHUNKS,
  ChunkRelay,
  type ChunkShape,
  type ChunkStream,
  type StreamChunk,
  TEXT_CHUNKS,
} from "./chunk-relay";
import { ResponseRelay, type ResponseEventStream } from "./response-relay";
import { type Answered, type BaseCall, type RequestHooks, Resilience, type ResilienceSettings } from "./resilience";

/** What any endpoint's request body is to the resilience layer: an object. */
type BodyFields = { readonly [field: string]: unknown };

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
interface OpenedStream<E> {
  readonly events: PullStream<E>;
  /** Undefined: the stream ended without any event. */
  readonly first: E | undefined;
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
    const answered = await this.whole(backend, request, prompt, options, completeVia);
    const result = answered.value;
    const first = { index: 0, message: result.message, finish_reason: result.finishReason, logprobs: null };
    const choices =
      result.more === undefined
        ? [first]
        : [
            first,
            ...result.more.map((choice, index) => ({
              index: index + 1,
              message: choice.message,
              finish_reason: choice.finishReason,
              logprobs: null,
            })),
          ];
    const usage =
      result.usage ?? estimateUsage(prompt, choices.map((choice) => choice.message.content ?? "").join(" "));
    this.charge(answered.backend, usage, options, "chat");
    return {
      id: randomUUID(),
      object: "chat.completion",
      created: Math.floor(Date.now() / 1000),
      model: request.model ?? backend.name,
      backend: answered.backend.name,
      choices,
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
    const answered = await this.opened(backend, request, prompt, options, streamVia);
    return relayChunks<ChatCompletionChunk>(answered, backend, request, prompt, options, CHAT_CHUNKS);
  }

  /** `POST /v1/completions`: routed, allowed and guarded as chat is; `n` choices, usage counted. */
  async completeText(request: CompletionsRequest, options: CallOptions): Promise<TextCompletion> {
    const backend = this.routeServing(request, options, "completeText");
    const prompt = completionPrompt(request.prompt);
    const answered = await this.whole(backend, request, prompt, options, completeTextVia);
    const result = answered.value;
    const choices = result.choices.map((choice, index) => ({
      text: choice.text,
      index,
      logprobs: choice.logprobs,
      finish_reason: choice.finishReason,
    }));
    const usage = result.usage ?? estimateUsage(prompt, choices.map((choice) => choice.text).join(" "));
    this.charge(answered.backend, usage, options, "completions");
    return {
      id: randomUUID(),
      object: "text_completion",
      created: Math.floor(Date.now() / 1000),
      model: request.model ?? backend.name,
      backend: answered.backend.name,
      choices,
      usage,
    };
  }

  /** As completeText, streamed as `text_completion` chunks with chat's integrity rules (see ChunkRelay). */
  async openTextStream(request: CompletionsRequest, options: CallOptions): Promise<ChunkStream<TextCompletionChunk>> {
    const backend = this.routeServing(request, options, "streamText");
    options.onStream?.();
    const prompt = completionPrompt(request.prompt);
    const answered = await this.opened(backend, request, prompt, options, streamTextVia);
    return relayChunks<TextCompletionChunk>(answered, backend, request, prompt, options, TEXT_CHUNKS);
  }

  /**
   * `POST /v1/responses`, whole: the upstream's Response passed through (its id kept, so a later
   * `previous_response_id` still refers to it), with `model` as asked and `backend` added.
   */
  async respond(request: ResponsesRequest, options: CallOptions): Promise<ResponseObject> {
    const backend = this.routeServing(request, options, "respond");
    const prompt = responseInputText(request.input);
    const answered = await this.whole(backend, request, prompt, options, respondVia);
    const result = answered.value;
    const usage = responseUsage(result.usage) ?? estimateUsage(prompt, outputText(result));
    this.charge(answered.backend, usage, options, "responses");
    return { ...result, model: request.model ?? backend.name, backend: answered.backend.name };
  }

  /** As respond, streamed: the upstream's typed events, relayed as they come (see ResponseRelay). */
  async openResponseStream(request: ResponsesRequest, options: CallOptions): Promise<ResponseEventStream> {
    const backend = this.routeServing(request, options, "streamResponse");
    options.onStream?.();
    const prompt = responseInputText(request.input);
    const answered = await this.opened(backend, request, prompt, options, streamResponseVia);
    return new ResponseRelay({
      ...answered.value,
      backend: answered.backend,
      model: request.model ?? backend.name,
      prompt,
      options,
      settle: answered.settle,
    });
  }

  /**
   * `POST /v1/embeddings`: routed and allowed as a chat request is, with the same retries, failover and
   * fallbacks. The backend's answer passes through with `backend` added, and `usage` counted (or estimated).
   */
  async embed(request: EmbeddingsRequest, options: CallOptions): Promise<EmbeddingsResponse> {
    const backend = this.routeServing(request, options, "embed");
    const prompt = embeddingTexts(request.input).join("\n");
    const answered = await this.whole(backend, request, prompt, options, embedVia);
    const result = answered.value;
    const tokens = result.usage?.prompt_tokens ?? countTokens(prompt);
    const usage = { prompt_tokens: tokens, total_tokens: result.usage?.total_tokens ?? tokens };
    const counted = { prompt_tokens: tokens, completion_tokens: 0, total_tokens: usage.total_tokens };
    this.charge(answered.backend, counted, options, "embeddings");
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

  /** A whole answer from `backend` (or its fallbacks) through the resilience layer, each call timed. */
  private whole<Body extends BodyFields, T>(
    backend: Backend,
    request: Body,
    prompt: string,
    options: CallOptions,
    run: (backend: Backend, call: BackendCall<Body>) => Promise<T>,
  ): Promise<Answered<T>> {
    return this.resilience.call(backend, baseCall(request, prompt, options), options, "complete", (target, call) =>
      this.timed(target, call, run),
    );
  }

  /** A stream from `backend` (or its fallbacks) through the resilience layer, resolved with its first event. */
  private opened<Body extends BodyFields, E>(
    backend: Backend,
    request: Body,
    prompt: string,
    options: CallOptions,
    open: (backend: Backend, call: BackendCall<Body>) => AsyncIterable<E>,
  ): Promise<Answered<OpenedStream<E>>> {
    return this.resilience.call(backend, baseCall(request, prompt, options), options, "start", (target, call) =>
      this.openOnce(target, call, open),
    );
  }

  /** One try at a stream: done once its first event arrives. The call stays open (in flight) for relay. */
  private async openOnce<C, E>(
    backend: Backend,
    call: C,
    open: (backend: Backend, call: C) => AsyncIterable<E>,
  ): Promise<OpenedStream<E>> {
    const series = this.seriesOf(backend);
    const started = performance.now();
    series.callStarted();
    const events = pullFrom(open(backend, call));
    try {
      return { events, first: await firstEvent(events), series, started };
    } catch (error) {
      series.callEnded((performance.now() - started) / 1000, error);
      throw error;
    }
  }

  /** The routed and allowed backend, refused (400 `unsupported_endpoint`) when its type lacks `method`. */
  private routeServing(request: { readonly model?: string }, options: CallOptions, method: OptionalMethod): Backend {
    const backend = this.routeAllowed(request, options);
    serving(backend, method);
    return backend;
  }

  private routeAllowed(request: { readonly model?: string }, options: CallOptions): Backend {
    const backend = this.route(request.model);
    const allowlist = options.allowlist;
    if (allowlist === undefined || allowlist.backends.has(backend.name)) return backend;
    this.refusals?.rejected(allowlist.key, "model_not_allowed");
    throw new BackendNotAllowedError(allowlist.key, backend.name);
  }

  /** A whole answer's tokens: counted under `endpoint` for the backend that answered, charged to the request's key. */
  private charge(backend: Backend, usage: Usage, options: CallOptions, endpoint: Endpoint): void {
    this.seriesOf(backend).countTokens(usage, endpoint);
    options.onUsage?.(usage);
  }

  private seriesOf(backend: Backend): BackendSeries {
    return this.series.get(backend) ?? this.metrics.backend(backend.name);
  }
}

const completeVia = (backend: Backend, call: BackendCall): Promise<BackendResult> => backend.complete(call);

const streamVia = (backend: Backend, call: BackendCall): AsyncIterable<StreamEvent> => backend.stream(call);

/** The endpoints a backend type may lack, each with the name it is refused under. */
const OPTIONAL_ENDPOINTS = {
  embed: "embeddings",
  completeText: "completions",
  streamText: "completions",
  respond: "responses",
  streamResponse: "responses",
} as const;
type OptionalMethod = keyof typeof OPTIONAL_ENDPOINTS;

/** `backend`'s `method`; 400 `unsupported_endpoint` when its type has none (a fallback may lack it too). */
function serving<M extends OptionalMethod>(backend: Backend, method: M): NonNullable<Backend[M]> {
  const found = backend[method];
  if (found === undefined) throw new UnsupportedEndpointError(backend.name, OPTIONAL_ENDPOINTS[method]);
  return found;
}

const completeTextVia = (backend: Backend, call: BackendCall<CompletionsRequest>): Promise<TextResult> =>
  serving(backend, "completeText").call(backend, call);

const streamTextVia = (backend: Backend, call: BackendCall<CompletionsRequest>): AsyncIterable<StreamEvent> =>
  serving(backend, "streamText").call(backend, call);

const respondVia = (backend: Backend, call: BackendCall<ResponsesRequest>): Promise<ResponseResult> =>
  serving(backend, "respond").call(backend, call);

const streamResponseVia = (backend: Backend, call: BackendCall<ResponsesRequest>): AsyncIterable<ResponseEvent> =>
  serving(backend, "streamResponse").call(backend, call);

const embedVia = (backend: Backend, call: BackendCall<EmbeddingsRequest>): Promise<EmbeddingsResult> =>
  serving(backend, "embed").call(backend, call);

/** A started stream's chunks, in `shape`, for the request routed to `routed` (`answered` may be a fallback). */
function relayChunks<C extends StreamChunk>(
  answered: Answered<OpenedStream<StreamEvent>>,
  routed: Backend,
  request: { readonly model?: string; readonly n?: number; readonly stream_options?: unknown },
  prompt: string,
  options: CallOptions,
  shape: ChunkShape,
): ChunkRelay<C> {
  return new ChunkRelay<C>({
    ...answered.value,
    backend: answered.backend,
    model: request.model ?? routed.name,
    prompt,
    options,
    // Whether the client asked for a usage chunk at the end of its stream.
    includeUsage: (request.stream_options as { include_usage?: unknown } | undefined)?.include_usage === true,
    settle: answered.settle,
    shape,
    choices: request.n ?? 1,
  });
}

/** The `output_text` of a Response's message items, for the estimate when it reports no usage. */
function outputText(response: ResponseResult): string {
  const texts: string[] = [];
  const output = response.output;
  for (const item of Array.isArray(output) ? (output as unknown[]) : []) {
    const content = typeof item === "object" && item !== null ? (item as Record<string, unknown>).content : undefined;
    for (const part of Array.isArray(content) ? (content as unknown[]) : []) {
      const text = typeof part === "object" && part !== null ? (part as Record<string, unknown>).text : undefined;
      if (typeof text === "string") texts.push(text);
    }
  }
  return texts.join(" ");
}

/** The stream's first event, taken; undefined if it ended with none. Throws what broke it first. */
async function firstEvent<E>(events: PullStream<E>): Promise<E | undefined> {
  // Each turn waits for the backend to report something new.
  for (;;) {
    const event = events.take();
    if (event !== undefined || events.ended) return event;
    await events.wait();
  }
}

function baseCall<Body>(request: Body, prompt: string, options: CallOptions): BaseCall<Body> {
  return { request, prompt, requestId: options.requestId, signal: options.signal, hops: options.hops ?? 0 };
}

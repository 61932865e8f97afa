import type { Logger } from "winston";
import type { CircuitBreakerOptions } from "../balancing/circuit-breaker";
import type { TargetPool } from "../balancing/pool";
import type { Target } from "../balancing/target";
import type { ConfigFields } from "../config/fields";
import type { AssistantMessage, ChatCompletionRequest, Usage } from "../schemas/chat";
import type { CompletionsRequest } from "../schemas/completions";
import type { EmbeddingsRequest } from "../schemas/embeddings";
import type { ResponseEvent, ResponsesRequest } from "../schemas/responses";
import type { ResponseBudget } from "./response-budget";

/**
 * One request as a backend sees it: the validated client body (a chat request unless said otherwise) plus
 * what the gateway derived from it.
 */
export interface BackendCall<Body = ChatCompletionRequest> {
  readonly request: Body;
  /** The user's text, already extracted (see utils/prompt). */
  readonly prompt: string;
  readonly requestId: string;
  /** Aborted when the client goes away, so a backend can stop upstream work nobody will read. */
  readonly signal: AbortSignal;
  /**
   * How many gateways the request passed through before this one (its `x-gateway-hops`, 0 from a client).
   * A backend that calls another gateway sends one more, so a loop of gateways ends at MAX_HOPS.
   */
  readonly hops?: number;
  /**
   * `performance.now()` by which the answer (for a stream, its first event) must have started; past it the
   * backend gives up with an UpstreamTimeoutError. The retries of one request share it, so a backend's
   * `timeout` bounds them all together. Undefined: the backend applies its own `timeoutSeconds` per call.
   */
  readonly deadline?: number;
  /** Which of the backend's targets (`pool`) to call, as the resilience layer picked it; absent: the first. */
  readonly target?: Target;
}

export interface BackendResult {
  readonly message: AssistantMessage;
  readonly finishReason: string;
  /** The backend's own token counts, when it has them; otherwise the gateway estimates. */
  readonly usage?: Usage;
  /** With `n` > 1: the choices after the first, in order (the first is `message` and `finishReason`). */
  readonly more?: readonly { readonly message: AssistantMessage; readonly finishReason: string }[];
}

/** A legacy text completion's answer: one choice per `n`. */
export interface TextResult {
  readonly choices: readonly { readonly text: string; readonly logprobs: unknown; readonly finishReason: string }[];
  readonly usage?: Usage;
}

/** A Responses API answer as the upstream made it: a JSON object, passed through. */
export type ResponseResult = Readonly<Record<string, unknown>>;

/** An embeddings answer as the backend produced it: OpenAI's fields, any extra ones passed through. */
export interface EmbeddingsResult {
  readonly data: readonly unknown[];
  readonly usage?: { readonly prompt_tokens: number; readonly total_tokens: number };
  readonly [extra: string]: unknown;
}

/** One step of a streamed answer, in the order the backend produced it. */
export interface StreamEvent {
  /**
   * Added to the choice: for chat, to the assistant message (content, role, tool_calls…), exactly as the
   * backend produced it; for a text completion, `{text}` (and `logprobs` when the backend sent some).
   */
  readonly delta?: Readonly<Record<string, unknown>>;
  readonly finishReason?: string;
  /** The backend's own token counts for the whole answer, usually last. */
  readonly usage?: Usage;
  /** Which choice it adds to (with `n` > 1); absent: 0. */
  readonly index?: number;
  /** Further choices the same upstream event carried (rare: most servers send one choice per event). */
  readonly also?: readonly StreamEvent[];
}

/**
 * What the inference service talks to. The service never asks which type a backend is: everything a type
 * does differently lives behind this interface.
 */
export interface Backend {
  readonly name: string;
  readonly type: string;
  /** Where it sends requests, for the start-up log; never holds a secret. */
  readonly target: string;
  /**
   * The most the gateway waits on this backend for one request, retries included (the http type's
   * `timeout`); undefined for a backend that cannot hang (echo). Retries are never scheduled past it.
   */
  readonly timeoutSeconds?: number;
  /**
   * Its upstreams (one for most backends): the resilience layer picks one per call from it, counts the
   * calls in flight on each and feeds each one's breaker; the backend keeps the membership (discovery) and
   * the active health checks.
   */
  readonly pool: TargetPool;
  complete(call: BackendCall): Promise<BackendResult>;
  /**
   * The answer as it is produced. Failing before the first event lets the gateway still answer with an
   * HTTP error; failing later breaks a stream the client has already started reading. Ending the
   * iteration early (the client left) must release the upstream request at once.
   */
  stream(call: BackendCall): AsyncIterable<StreamEvent>;
  /**
   * `POST /v1/embeddings`; absent: this backend type has none (the gateway answers 400). The answer is the
   * OpenAI shape with at least `data`; the gateway adds `backend` and, when missing, `usage`.
   */
  embed?(call: BackendCall<EmbeddingsRequest>): Promise<EmbeddingsResult>;
  /** `POST /v1/completions` (legacy text completions), whole; absent: none (400). */
  completeText?(call: BackendCall<CompletionsRequest>): Promise<TextResult>;
  /** The same, streamed: events whose delta is `{text}`, with the same rules as `stream`. */
  streamText?(call: BackendCall<CompletionsRequest>): AsyncIterable<StreamEvent>;
  /** `POST /v1/responses`, whole: the upstream's Response object; absent: none (400). */
  respond?(call: BackendCall<ResponsesRequest>): Promise<ResponseResult>;
  /** The same, streamed: the upstream's typed events in order, each a JSON object with a `type`. */
  streamResponse?(call: BackendCall<ResponsesRequest>): AsyncIterable<ResponseEvent>;
  /** Release pooled connections; called once at shutdown. */
  close(): Promise<void>;
}

/** What a backend may use from the process, passed in so tests control it. */
export interface BackendContext {
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly logger: Logger;
  /** The process's one budget for upstream answers buffered whole (`MAX_BUFFERED_BYTES`), shared by all backends. */
  readonly responseBudget: ResponseBudget;
  /** The backend's `circuit_breaker`, which each of its targets gets its own of; undefined: none. */
  readonly circuitBreaker?: CircuitBreakerOptions;
}

/**
 * A backend type: reads and checks its own YAML fields (pure, at config load), then builds instances.
 * Options is the type's own parsed settings; the registry hands `create` only what `parseOptions` made.
 */
export interface BackendFactory<Options> {
  readonly type: string;
  parseOptions(fields: ConfigFields, env: BackendContext["env"]): Options;
  create(name: string, options: Options, context: BackendContext): Backend;
}

import { type Dispatcher, errors as undiciErrors } from "undici";
import {
  ClientClosedError,
  GatewayError,
  LoopDetectedError,
  UpstreamClientError,
  UpstreamHttpError,
  UpstreamInvalidResponseError,
  UpstreamStreamError,
  UpstreamTimeoutError,
  UpstreamUnreachableError,
} from "../../errors";
import { parseRetryAfter, retryAfterHeader } from "../../utils/retry-after";
import { PullQueue } from "../../utils/pull-stream";
import { EventTooLargeError, type ServerSentEvent } from "../../utils/sse";
import type { TargetPool } from "../../balancing/pool";
import type { CompletionsRequest } from "../../schemas/completions";
import type { EmbeddingsRequest } from "../../schemas/embeddings";
import type { ResponseEvent, ResponsesRequest } from "../../schemas/responses";
import type {
  Backend,
  BackendCall,
  BackendContext,
  BackendResult,
  EmbeddingsResult,
  ResponseResult,
  StreamEvent,
  TextResult,
} from "../backend";
import type { ResponseBudget } from "../response-budget";
import type { HttpBackendOptions } from "./factory";
import { type Upstream, Upstreams } from "./upstreams";
import { type EventSink, StreamExchange } from "./stream-exchange";
import { AnswerAllowance, readWhole, type WholeAnswer } from "./whole-answer";
import {
  parseAnswer,
  parseEmbeddings,
  parseResponse,
  parseResponseEvent,
  parseStreamEvent,
  parseTextAnswer,
  parseTextStreamEvent,
  quoteUpstreamError,
} from "./wire";

/** Forwards to an OpenAI-compatible `/v1/chat/completions` (llama.cpp, vLLM, OpenAI, another gateway). */
export class HttpBackend implements Backend {
  readonly type = "http";
  readonly target: string;
  readonly timeoutSeconds: number;
  readonly pool: TargetPool;
  private readonly upstreams: Upstreams;
  private readonly budget: ResponseBudget;
  private readonly timeoutMs: number;

  constructor(
    readonly name: string,
    private readonly options: HttpBackendOptions,
    context: BackendContext,
    upstreams?: Upstreams,
  ) {
    this.timeoutSeconds = options.timeoutSeconds;
    this.timeoutMs = options.timeoutSeconds * 1000;
    this.budget = context.responseBudget;
    this.upstreams = upstreams ?? new Upstreams(name, options, context);
    this.pool = this.upstreams.pool;
    this.target = this.upstreams.describe();
  }

  complete(call: BackendCall): Promise<BackendResult> {
    const upstream = this.upstreams.of(call.target);
    return this.exchange(upstream, call, upstream.spec.path, this.payload(call, false), this.readChat);
  }

  /** `{base}/embeddings` with the client's body (the configured `model` in place of the client's). */
  embed(call: BackendCall<EmbeddingsRequest>): Promise<EmbeddingsResult> {
    const upstream = this.upstreams.of(call.target);
    const path = `${upstream.spec.basePath}/embeddings`;
    return this.exchange(upstream, call, path, this.payload(call, false), this.readEmbeddings);
  }

  /** `{base}/completions`, the legacy text completions. */
  completeText(call: BackendCall<CompletionsRequest>): Promise<TextResult> {
    const upstream = this.upstreams.of(call.target);
    const path = `${upstream.spec.basePath}/completions`;
    return this.exchange(upstream, call, path, this.payload(call, false), this.readText);
  }

  /** `{base}/responses`: the upstream's Response object, passed through. */
  respond(call: BackendCall<ResponsesRequest>): Promise<ResponseResult> {
    const upstream = this.upstreams.of(call.target);
    const path = `${upstream.spec.basePath}/responses`;
    return this.exchange(upstream, call, path, this.payload(call, false), this.readResponse);
  }

  /** Made once: a call passes them on instead of making a closure per request. */
  private readonly readChat = (text: string): BackendResult => parseAnswer(text, this.name);
  private readonly readEmbeddings = (text: string): EmbeddingsResult => parseEmbeddings(text, this.name);
  private readonly readText = (text: string): TextResult => parseTextAnswer(text, this.name);
  private readonly readResponse = (text: string): ResponseResult => parseResponse(text, this.name);

  /**
   * One request whose answer is read whole, within the call's deadline and for as long as the client stays:
   * an error status becomes its GatewayError, a success is handed to `read`. One async step per call.
   */
  private async exchange<T>(
    upstream: Upstream,
    call: BackendCall<unknown>,
    path: string,
    payload: Record<string, unknown>,
    read: (text: string) => T,
  ): Promise<T> {
    // Serialised before the exchange starts: failing here is the gateway's bug, not the backend's failure.
    const options = this.requestOptions(upstream, call, path, payload);
    // One controller whose timer and listener are released as soon as the call ends: AbortSignal.timeout and
    // AbortSignal.any would keep each call's timer (and what it references) alive for the whole timeout.
    const stop = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      stop.abort();
    }, this.remainingMs(call));
    const onClientGone = () => stop.abort();
    call.signal.addEventListener("abort", onClientGone, { once: true });
    if (call.signal.aborted) stop.abort();
    let answer: WholeAnswer;
    try {
      answer = await readWhole(upstream.dispatcher, options, stop.signal, this.allowance());
    } catch (error) {
      throw this.transportError(error, call.signal, timedOut);
    } finally {
      clearTimeout(timer);
      call.signal.removeEventListener("abort", onClientGone);
    }
    if (answer.status < 200 || answer.status > 299)
      throw this.statusError(answer.status, answer.text, answer.headers, upstream.spec.apiKey);
    return read(answer.text);
  }

  /** A streamed chat answer: see `events`. */
  stream(call: BackendCall): PullQueue<StreamEvent> {
    const upstream = this.upstreams.of(call.target);
    return this.events(upstream, call, upstream.spec.path, this.payload(call, true), CHAT_STREAM);
  }

  /** A streamed text completion from `{base}/completions`: see `events`. */
  streamText(call: BackendCall<CompletionsRequest>): PullQueue<StreamEvent> {
    const upstream = this.upstreams.of(call.target);
    const path = `${upstream.spec.basePath}/completions`;
    return this.events(upstream, call, path, this.payload(call, true), TEXT_STREAM);
  }

  /** A streamed Response from `{base}/responses`, its typed events as they come: see `events`. */
  streamResponse(call: BackendCall<ResponsesRequest>): PullQueue<ResponseEvent> {
    const upstream = this.upstreams.of(call.target);
    const path = `${upstream.spec.basePath}/responses`;
    return this.events(upstream, call, path, this.payload(call, true, false), RESPONSE_STREAM);
  }

  /**
   * The upstream's events as they arrive, in a PullQueue the relay takes them from: each upstream read is
   * parsed and queued in undici's data callback, with no promise per event. `timeout` bounds the wait for
   * the stream to start (its first event); from then on `idle_timeout` bounds each silence between events, so
   * a long answer that keeps flowing is never cut off, while one that stalls is.
   */
  private events<E>(
    upstream: Upstream,
    call: BackendCall<unknown>,
    path: string,
    payload: Record<string, unknown>,
    format: StreamFormat<E>,
  ): PullQueue<E> {
    const apiKey = upstream.spec.apiKey;
    const feed = new EventFeed(format, call, this.name, this.options, apiKey, this.remainingMs(call));
    let options: Dispatcher.DispatchOptions;
    try {
      // As in complete(): a payload that cannot be serialised is not a transport failure.
      options = this.requestOptions(upstream, call, path, payload);
    } catch (error) {
      feed.over(error);
      return feed.queue;
    }
    const exchange = StreamExchange.open(
      upstream.dispatcher,
      options,
      feed.stop.signal,
      this.options.maxEventBytes,
      () => this.allowance(),
    );
    feed.exchange = exchange;

    const start = async (): Promise<void> => {
      try {
        await exchange.head();
      } catch (error) {
        throw this.transportError(error, call.signal, feed.expired !== undefined);
      }
      if (exchange.status < 200 || exchange.status > 299) {
        // Bounded like any answer read whole; past the bounds the status alone is reported.
        const text = await exchange.text().catch(() => "");
        throw this.statusError(exchange.status, text, exchange.headers, apiKey);
      }
      if (exchange.isEventStream) {
        exchange.relay(feed);
        return;
      }
      // Some servers ignore `stream: true` and answer in one piece: pass that on as a one-event stream.
      let text: string;
      try {
        text = await exchange.text();
      } catch (error) {
        throw this.transportError(error, call.signal, feed.expired !== undefined);
      }
      const whole = format.whole(text, this.name);
      feed.finished = true;
      for (const event of whole) feed.queue.push(event);
      feed.over();
    };
    start().catch((error: unknown) => {
      feed.over(error);
      exchange.abort();
    });
    return feed.queue;
  }

  /** One answer's claim on `max_response_bytes` and on the process's budget. */
  private allowance(): AnswerAllowance {
    return new AnswerAllowance(this.budget, this.options.maxResponseBytes, this.name);
  }

  /** Time left until the call's deadline (shared with its retries), or the whole `timeout` for a lone call. */
  private remainingMs(call: BackendCall<unknown>): number {
    // Whole milliseconds, rounded up: AbortSignal.timeout takes only integers, and early is worse than late.
    return call.deadline === undefined ? this.timeoutMs : Math.max(0, Math.ceil(call.deadline - performance.now()));
  }

  /**
   * The client's body with the configured `model` in place of the client's; streamed, asking for usage
   * unless `askUsage` is false (the Responses API reports it in its final event, and has no stream_options).
   */
  private payload(
    call: BackendCall<{ readonly [field: string]: unknown }>,
    stream: boolean,
    askUsage = true,
  ): Record<string, unknown> {
    const payload: Record<string, unknown> = { ...call.request };
    if (this.options.model !== undefined) payload.model = this.options.model;
    if (stream) {
      payload.stream = true;
      if (!askUsage) return payload;
      // Always ask for usage: the gateway counts tokens per backend even when the client did not ask.
      payload.stream_options = {
        ...(typeof call.request.stream_options === "object" ? call.request.stream_options : {}),
        include_usage: true,
      };
    }
    return payload;
  }

  private requestOptions(
    upstream: Upstream,
    call: BackendCall<unknown>,
    path: string,
    payload: Record<string, unknown>,
  ): Dispatcher.DispatchOptions {
    const headers: Record<string, string> = {
      "content-type": "application/json",
      accept: payload.stream === true ? "text/event-stream" : "application/json",
      "x-request-id": call.requestId,
      // Counted by the gateway at the other end (if it is one): a loop of gateways stops at MAX_HOPS.
      "x-gateway-hops": String((call.hops ?? 0) + 1),
    };
    if (upstream.spec.apiKey !== undefined) headers.authorization = `Bearer ${upstream.spec.apiKey}`;
    if (upstream.host !== undefined) headers.host = upstream.host;
    return { method: "POST", path, headers, body: JSON.stringify(payload) };
  }

  async close(): Promise<void> {
    await this.upstreams.close();
  }

  private transportError(error: unknown, clientSignal: AbortSignal, timedOut: boolean): GatewayError {
    if (clientSignal.aborted) return new ClientClosedError();
    // Our own verdict on the answer (too large, budget spent), made while reading it.
    if (error instanceof GatewayError) return error;
    if (timedOut) return new UpstreamTimeoutError(this.name, this.options.timeoutSeconds);
    if (error instanceof undiciErrors.ConnectTimeoutError) {
      return new UpstreamUnreachableError(this.name, `connect timed out after ${this.options.connectTimeoutSeconds} s`);
    }
    return new UpstreamUnreachableError(this.name, describeCause(error));
  }

  /**
   * 4xx that describe the client's request (bad params, unknown model, too large, rate limited) keep their
   * status so clients and SDK retry logic see the truth; auth failures are our configuration's fault, and
   * 5xx are the upstream's, so both become 502. A 508 is a gateway further on refusing a loop: it stays a
   * 508, so every gateway in the loop answers it without retrying or falling back (which would multiply it).
   */
  private statusError(
    status: number,
    text: string,
    headers: Record<string, string | string[] | undefined>,
    apiKey: string | undefined,
  ): GatewayError {
    const message = quoteUpstreamError(text, status, apiKey);
    if (status === 508) return new LoopDetectedError(`Backend '${this.name}' reported a gateway loop: ${message}`);
    const retryAfterMs = parseRetryAfter(headers["retry-after"], Date.now());
    const isClientFault =
      status >= 400 && status < 500 && status !== 401 && status !== 403 && status !== 407 && status !== 408;
    if (!isClientFault) return new UpstreamHttpError(this.name, status, message, retryAfterMs);
    const passOn: Record<string, string> = {};
    if (retryAfterMs !== undefined) passOn["retry-after"] = retryAfterHeader(retryAfterMs);
    // An upstream that knows retrying is pointless (an exhausted quota's 429) says so; keep its word.
    const shouldRetry = headers["x-should-retry"];
    if (shouldRetry === "true" || shouldRetry === "false") passOn["x-should-retry"] = shouldRetry;
    return new UpstreamClientError(this.name, status, message, passOn, retryAfterMs);
  }
}

/**
 * One streamed call's events on their way from its exchange (this is the exchange's sink) to the queue the
 * relay takes them from, with the call's timers: `timeout` bounds the wait for the stream to start (its first
 * event); from then on `idle_timeout` bounds each silence between events, so a long answer that keeps flowing
 * is never cut off, while one that stalls is. One object per call that each event touches, where a sink
 * object and closures over the call's variables were several (and a time kept in a closure's variable was a
 * new heap number per event).
 */
class EventFeed<E> implements EventSink {
  readonly queue: PullQueue<E>;
  readonly stop = new AbortController();
  /** `[DONE]` came: the exchange reads the rest of the body to keep the connection, and is left to it. */
  finished = false;
  /** Which deadline passed, if one did. */
  expired: "start" | "idle" | undefined;
  exchange: StreamExchange | undefined;
  /** The relay is behind (the client reads slowly): the upstream is paused, which is not its silence. */
  private paused = false;
  private lastEventAt = 0;
  // One timer for the whole stream, not one per event: an event only notes its time, and the timer, when it
  // fires, sleeps again for what is left of the idle timeout since the last one.
  private timer: NodeJS.Timeout;

  constructor(
    private readonly format: StreamFormat<E>,
    private readonly call: BackendCall<unknown>,
    private readonly backend: string,
    private readonly options: HttpBackendOptions,
    private readonly apiKey: string | undefined,
    startMs: number,
  ) {
    // Leaving early (the client gone, or the relay gave up) closes the upstream request now, not when it ends.
    this.queue = new PullQueue<E>(() => {
      if (!this.finished) this.stop.abort();
    });
    this.timer = setTimeout(this.check, startMs);
    call.signal.addEventListener("abort", this.onClientGone, { once: true });
  }

  event(event: ServerSentEvent): boolean {
    if (this.lastEventAt === 0) {
      // Started: from now on the timer watches the silences, not the start deadline.
      clearTimeout(this.timer);
      this.timer = setTimeout(this.check, this.options.idleTimeoutSeconds * 1000);
    }
    this.lastEventAt = performance.now();
    if (event.data === "[DONE]") {
      this.finished = true;
      this.exchange?.finish();
      this.over();
      return true;
    }
    let parsed: E | undefined;
    try {
      parsed = this.format.parse(event.event, event.data, this.backend, this.apiKey);
    } catch (error) {
      // The failure first: aborting the exchange reports its own (a lost connection) to this sink.
      this.over(error);
      this.exchange?.abort();
      return false;
    }
    if (parsed === undefined || this.queue.push(parsed)) return true;
    this.paused = true;
    void this.queue.whenTaken().then(() => {
      this.paused = false;
      this.exchange?.resume();
    });
    return false;
  }

  // A Responses stream has no `[DONE]`: its relay judges whether it ended on a final event.
  end(): void {
    this.over(
      this.format.endsWithDone ? new UpstreamStreamError(this.backend, "the stream ended before [DONE]") : undefined,
    );
  }

  fail(error: Error): void {
    this.over(this.broken(error));
  }

  /** The stream is over for this call: the timer and listener let go, the queue ended or failed. */
  over(failure?: unknown): void {
    clearTimeout(this.timer);
    this.call.signal.removeEventListener("abort", this.onClientGone);
    if (failure === undefined) this.queue.end();
    else this.queue.fail(failure);
  }

  /** What a failure after the start means for the client. */
  private broken(error: unknown): unknown {
    const backend = this.backend;
    const { timeoutSeconds, idleTimeoutSeconds } = this.options;
    if (error instanceof GatewayError) return error;
    if (error instanceof EventTooLargeError) return new UpstreamInvalidResponseError(backend, error.message);
    if (this.call.signal.aborted) return new ClientClosedError();
    if (this.expired === "start") return new UpstreamTimeoutError(backend, timeoutSeconds);
    if (this.expired === "idle") return new UpstreamTimeoutError(backend, idleTimeoutSeconds, "sent no stream event");
    return new UpstreamStreamError(backend, `the connection was lost (${describeCause(error)})`);
  }

  private readonly check = (): void => {
    if (this.lastEventAt === 0) {
      this.expired = "start";
      this.stop.abort();
      return;
    }
    const idleMs = this.options.idleTimeoutSeconds * 1000;
    const quiet = this.paused ? 0 : performance.now() - this.lastEventAt;
    if (quiet >= idleMs) {
      this.expired = "idle";
      this.stop.abort();
    } else this.timer = setTimeout(this.check, Math.ceil(idleMs - quiet));
  };

  private readonly onClientGone = (): void => {
    this.stop.abort();
  };
}

/** How one endpoint's stream is read: its events, and an answer sent whole although a stream was asked for. */
interface StreamFormat<E> {
  parse(type: string | undefined, data: string, backend: string, apiKey: string | undefined): E | undefined;
  /** Some servers ignore `stream: true` and answer in one piece: that answer as the events it stands for. */
  whole(text: string, backend: string): readonly E[];
  /** Whether the stream must end with `data: [DONE]` (an end without it is a cut). */
  readonly endsWithDone: boolean;
}

const CHAT_STREAM: StreamFormat<StreamEvent> = {
  parse: parseStreamEvent,
  whole: (text, backend) => {
    const answer = parseAnswer(text, backend);
    const first = { delta: { ...answer.message }, finishReason: answer.finishReason };
    const also = answer.more?.map((choice, index) => ({
      delta: { ...choice.message },
      finishReason: choice.finishReason,
      index: index + 1,
    }));
    return [{ ...first, usage: answer.usage, also }];
  },
  endsWithDone: true,
};

const TEXT_STREAM: StreamFormat<StreamEvent> = {
  parse: parseTextStreamEvent,
  whole: (text, backend) => {
    const answer = parseTextAnswer(text, backend);
    const [first, ...rest] = answer.choices.map((choice, index) => ({
      delta: choice.logprobs === null ? { text: choice.text } : { text: choice.text, logprobs: choice.logprobs },
      finishReason: choice.finishReason,
      index,
    }));
    return first === undefined ? [] : [{ ...first, usage: answer.usage, also: rest }];
  },
  endsWithDone: true,
};

const RESPONSE_STREAM: StreamFormat<ResponseEvent> = {
  parse: parseResponseEvent,
  // The events a stream of that Response would have begun and ended with.
  whole: (text, backend) => {
    const response = parseResponse(text, backend);
    return [
      { type: "response.created", sequence_number: 0, response: { ...response, status: "in_progress", output: [] } },
      { type: "response.completed", sequence_number: 1, response },
    ];
  },
  endsWithDone: false,
};

function describeCause(error: unknown): string {
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    const cause = error.cause instanceof Error ? `: ${error.cause.message}` : "";
    return typeof code === "string" ? `${code} ${error.message}${cause}` : `${error.message}${cause}`;
  }
  return String(error);
}

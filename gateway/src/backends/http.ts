import type { IncomingHttpHeaders } from "node:http";
import { type Dispatcher, Pool, errors as undiciErrors } from "undici";
import type { ConfigFields } from "../config/fields";
import { ConfigError } from "../config/errors";
import {
  ClientClosedError,
  GatewayError,
  LoopDetectedError,
  ResponseBudgetExhaustedError,
  UpstreamClientError,
  UpstreamHttpError,
  UpstreamInvalidResponseError,
  UpstreamStreamError,
  UpstreamTimeoutError,
  UpstreamUnreachableError,
} from "../errors";
import type { AssistantMessage } from "../schemas/chat";
import { exceedsDepth, MAX_JSON_DEPTH } from "../utils/json-depth";
import { quoteRedacted } from "../utils/redact";
import { parseRetryAfter, retryAfterHeader } from "../utils/retry-after";
import { DEFAULT_MAX_EVENT_BYTES, EventTooLargeError, parseServerSentEvents } from "../utils/sse";
import { parseUsage } from "../utils/tokens";
import type { Backend, BackendCall, BackendContext, BackendFactory, BackendResult, StreamEvent } from "./backend";
import type { ResponseBudget } from "./response-budget";

export interface HttpBackendOptions {
  /** Origin for the connection pool, e.g. `http://mock-remote:8081`. */
  readonly origin: string;
  /** Path of the completions endpoint on that origin. */
  readonly path: string;
  /** The whole exchange; for a stream, until its first event. Shared by the retries of one request. */
  readonly timeoutSeconds: number;
  readonly connectTimeoutSeconds: number;
  /** Streams: the longest silence allowed between two events once the stream has started. */
  readonly idleTimeoutSeconds: number;
  /** The upstream's own model id, sent instead of the client's. */
  readonly model?: string;
  /** Resolved from `api_key_env` at load; never logged, never put in an error. */
  readonly apiKey?: string;
  /** Streams: the largest one event may be (`max_event_bytes`); a larger one fails the stream. */
  readonly maxEventBytes: number;
  /** The largest answer buffered whole (`max_response_bytes`): a non-streamed one, or a non-SSE answer to a stream. */
  readonly maxResponseBytes: number;
}

/** Bounds for the byte-size settings: below 1 KiB no real answer fits, above 1 GiB no process has the memory. */
const BYTE_SETTING_RANGE = { min: 1024, max: 1024 * 1024 * 1024 };

/** The default `max_response_bytes`: answers larger than this are refused rather than buffered. */
const DEFAULT_MAX_RESPONSE_BYTES = 32 * 1024 * 1024;
/** Upstream error text quoted back to clients is cut to this, so a 5 MB HTML error page stays out of logs. */
const MAX_QUOTED_ERROR_CHARS = 300;

/** Forwards to an OpenAI-compatible `/v1/chat/completions` (llama.cpp, vLLM, OpenAI, another gateway). */
class HttpBackend implements Backend {
  readonly type = "http";
  readonly target: string;
  readonly timeoutSeconds: number;
  private readonly pool: Pool;
  private readonly timeoutMs: number;
  private readonly idleTimeoutMs: number;

  constructor(
    readonly name: string,
    private readonly options: HttpBackendOptions,
    private readonly budget: ResponseBudget,
  ) {
    this.timeoutSeconds = options.timeoutSeconds;
    this.timeoutMs = options.timeoutSeconds * 1000;
    this.idleTimeoutMs = options.idleTimeoutSeconds * 1000;
    this.target = `${options.origin}${options.path}`;
    this.pool = new Pool(options.origin, {
      connectTimeout: options.connectTimeoutSeconds * 1000,
      // One deadline (the AbortSignal below) governs the whole exchange; undici's own timers would only
      // race it with less precise errors.
      headersTimeout: 0,
      bodyTimeout: 0,
      // No maxResponseSize: it would cut streams too, whose total is unbounded by design. Answers read whole
      // are bounded by AnswerAllowance (max_response_bytes and the shared budget), stream events by max_event_bytes.
    });
  }

  async complete(call: BackendCall): Promise<BackendResult> {
    // Serialised before the exchange starts: failing here is the gateway's bug, not the backend's failure.
    const options = this.requestOptions(call, this.payload(call, false));
    // One controller whose timer and listener are released as soon as the call ends: AbortSignal.timeout
    // would keep every call's timer (and what it references) alive for the whole timeout, and
    // AbortSignal.any adds a signal per call; together they cost about a tenth of the CPU per request.
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
      answer = await readWhole(this.pool, options, stop.signal, this.allowance());
    } catch (error) {
      throw this.transportError(error, call.signal, timedOut);
    } finally {
      clearTimeout(timer);
      call.signal.removeEventListener("abort", onClientGone);
    }

    if (answer.status < 200 || answer.status > 299) throw this.statusError(answer.status, answer.text, answer.headers);
    return this.parseAnswer(answer.text);
  }

  /**
   * Relays the upstream's events as they arrive. `timeout` bounds the wait for the stream to start (its
   * first event); from then on `idle_timeout` bounds each silence between events, so a long answer that
   * keeps flowing is never cut off, while one that stalls is.
   */
  async *stream(call: BackendCall): AsyncGenerator<StreamEvent> {
    // As in complete(): a payload that cannot be serialised is not a transport failure.
    const options = this.requestOptions(call, this.payload(call, true));
    const stop = new AbortController();
    let expired: "start" | "idle" | undefined;
    const onClientGone = () => stop.abort();
    call.signal.addEventListener("abort", onClientGone, { once: true });
    const expire = (phase: "start" | "idle") => () => {
      expired = phase;
      stop.abort();
    };
    let timer = setTimeout(expire("start"), this.remainingMs(call));
    const rearm = () => {
      clearTimeout(timer);
      timer = setTimeout(expire("idle"), this.idleTimeoutMs);
    };
    let finished = false;
    try {
      let response: Awaited<ReturnType<Pool["request"]>>;
      try {
        response = await this.pool.request({ ...options, signal: stop.signal });
      } catch (error) {
        throw this.transportError(error, call.signal, expired !== undefined);
      }
      if (response.statusCode < 200 || response.statusCode > 299) {
        // Bounded like any answer read whole; past the bounds the status alone is reported.
        const text = await this.readWhole(response.body).catch(() => "");
        throw this.statusError(response.statusCode, text, response.headers);
      }
      const contentType = String(response.headers["content-type"] ?? "");
      if (!contentType.includes("text/event-stream")) {
        // Some servers ignore `stream: true` and answer in one piece: pass that on as a one-event stream.
        let text: string;
        try {
          text = await this.readWhole(response.body);
        } catch (error) {
          throw this.transportError(error, call.signal, expired !== undefined);
        }
        const answer = this.parseAnswer(text);
        yield { delta: { ...answer.message }, finishReason: answer.finishReason, ...(answer.usage === undefined ? {} : { usage: answer.usage }) };
        finished = true;
        return;
      }
      try {
        for await (const event of parseServerSentEvents(response.body, this.options.maxEventBytes)) {
          rearm();
          if (event.data === "[DONE]") {
            finished = true;
            return;
          }
          yield* this.parseStreamEvent(event.event, event.data);
        }
      } catch (error) {
        if (error instanceof GatewayError) throw error;
        if (error instanceof EventTooLargeError) throw new UpstreamInvalidResponseError(this.name, error.message);
        if (call.signal.aborted) throw new ClientClosedError();
        if (expired === "start") throw new UpstreamTimeoutError(this.name, this.options.timeoutSeconds);
        if (expired === "idle") throw new UpstreamTimeoutError(this.name, this.options.idleTimeoutSeconds, "sent no stream event");
        throw new UpstreamStreamError(this.name, `the connection was lost (${describeCause(error)})`);
      }
      throw new UpstreamStreamError(this.name, "the stream ended before [DONE]");
    } finally {
      clearTimeout(timer);
      call.signal.removeEventListener("abort", onClientGone);
      // Leaving early (client gone, or an error) must close the upstream request now, not when it ends.
      if (!finished) stop.abort();
    }
  }

  /** One answer's claim on `max_response_bytes` and on the process's budget. */
  private allowance(): AnswerAllowance {
    return new AnswerAllowance(this.budget, this.options.maxResponseBytes, this.name);
  }

  /** A response body read whole within the allowance, which is released however the read ends. */
  private async readWhole(body: AsyncIterable<Buffer>): Promise<string> {
    const allowance = this.allowance();
    const chunks: Buffer[] = [];
    let received = 0;
    try {
      for await (const chunk of body) {
        received += chunk.length;
        allowance.need(received);
        chunks.push(chunk);
      }
      return utf8Text(chunks);
    } finally {
      allowance.release();
    }
  }

  /** Time left until the call's deadline (shared with its retries), or the whole `timeout` for a lone call. */
  private remainingMs(call: BackendCall): number {
    // Whole milliseconds, rounded up: AbortSignal.timeout takes only integers, and early is worse than late.
    return call.deadline === undefined ? this.timeoutMs : Math.max(0, Math.ceil(call.deadline - performance.now()));
  }

  private *parseStreamEvent(type: string | undefined, data: string): Generator<StreamEvent> {
    let body: unknown;
    try {
      body = JSON.parse(data);
    } catch {
      throw new UpstreamInvalidResponseError(this.name, "a stream event is not JSON");
    }
    if (typeof body !== "object" || body === null || Array.isArray(body)) throw new UpstreamInvalidResponseError(this.name, "a stream event is not a JSON object");
    // Checked before anything walks it: relaying it would overflow the stack in JSON.stringify.
    if (exceedsDepth(body, MAX_JSON_DEPTH)) throw new UpstreamInvalidResponseError(this.name, `a stream event is nested more than ${MAX_JSON_DEPTH} levels deep`);
    const fields = body as Record<string, unknown>;
    if (type === "error" || fields.error !== undefined) throw new UpstreamStreamError(this.name, this.quoted(data, 502));
    const choice = firstChoice(body);
    if (choice !== undefined) {
      const delta = choice.delta;
      const finishReason = typeof choice.finish_reason === "string" && choice.finish_reason !== "" ? choice.finish_reason : undefined;
      if (delta !== undefined && delta !== null && (typeof delta !== "object" || Array.isArray(delta))) {
        throw new UpstreamInvalidResponseError(this.name, "choices[0].delta is not an object");
      }
      const deltaFields = (delta ?? {}) as Record<string, unknown>;
      if (Object.keys(deltaFields).length > 0 || finishReason !== undefined) {
        yield { ...(Object.keys(deltaFields).length > 0 ? { delta: deltaFields } : {}), ...(finishReason === undefined ? {} : { finishReason }) };
      }
    } else if (!Array.isArray(fields.choices)) {
      throw new UpstreamInvalidResponseError(this.name, "a stream event has no choices");
    }
    const usage = parseUsage(fields.usage);
    if (usage !== undefined) yield { usage };
  }

  private payload(call: BackendCall, stream: boolean): Record<string, unknown> {
    const payload: Record<string, unknown> = { ...call.request };
    if (this.options.model !== undefined) payload.model = this.options.model;
    if (stream) {
      payload.stream = true;
      // Always ask for usage: the gateway counts tokens per backend even when the client did not ask.
      payload.stream_options = { ...(typeof call.request.stream_options === "object" ? call.request.stream_options : {}), include_usage: true };
    }
    return payload;
  }

  private requestOptions(call: BackendCall, payload: Record<string, unknown>): Dispatcher.DispatchOptions {
    const headers: Record<string, string> = {
      "content-type": "application/json",
      accept: payload.stream === true ? "text/event-stream" : "application/json",
      "x-request-id": call.requestId,
      // Counted by the gateway at the other end (if it is one): a loop of gateways stops at MAX_HOPS.
      "x-gateway-hops": String((call.hops ?? 0) + 1),
    };
    if (this.options.apiKey !== undefined) headers.authorization = `Bearer ${this.options.apiKey}`;
    return { method: "POST", path: this.options.path, headers, body: JSON.stringify(payload) };
  }

  async close(): Promise<void> {
    await this.pool.close();
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
  private statusError(status: number, text: string, headers: Record<string, string | string[] | undefined>): GatewayError {
    const message = this.quoted(text, status);
    if (status === 508) return new LoopDetectedError(`Backend '${this.name}' reported a gateway loop: ${message}`);
    const retryAfterMs = parseRetryAfter(headers["retry-after"], Date.now());
    const isClientFault = status >= 400 && status < 500 && status !== 401 && status !== 403 && status !== 407 && status !== 408;
    if (!isClientFault) return new UpstreamHttpError(this.name, status, message, retryAfterMs);
    const passOn: Record<string, string> = {};
    if (retryAfterMs !== undefined) passOn["retry-after"] = retryAfterHeader(retryAfterMs);
    // An upstream that knows retrying is pointless (an exhausted quota's 429) says so; keep its word.
    const shouldRetry = headers["x-should-retry"];
    if (shouldRetry === "true" || shouldRetry === "false") passOn["x-should-retry"] = shouldRetry;
    return new UpstreamClientError(this.name, status, message, passOn, retryAfterMs);
  }

  /**
   * The upstream's error message, as passed on to the client and the log. Upstreams quote the key they were
   * sent in auth errors ("Incorrect API key provided: sk-..."): the backend's own key must never reach either.
   */
  private quoted(text: string, status: number): string {
    return quoteRedacted(upstreamErrorMessage(text, status), this.options.apiKey, MAX_QUOTED_ERROR_CHARS);
  }

  private parseAnswer(text: string): BackendResult {
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      throw new UpstreamInvalidResponseError(this.name, "body is not JSON");
    }
    if (exceedsDepth(body, MAX_JSON_DEPTH)) throw new UpstreamInvalidResponseError(this.name, `body is nested more than ${MAX_JSON_DEPTH} levels deep`);
    const choice = firstChoice(body);
    if (choice === undefined) throw new UpstreamInvalidResponseError(this.name, "no choices[0]");
    const message = choice.message;
    if (typeof message !== "object" || message === null || Array.isArray(message)) {
      throw new UpstreamInvalidResponseError(this.name, "choices[0].message is missing");
    }
    const content = (message as Record<string, unknown>).content;
    if (typeof content !== "string" && content !== null && content !== undefined) {
      throw new UpstreamInvalidResponseError(this.name, "choices[0].message.content is not a string");
    }
    // Extra fields such as tool_calls or refusal pass through; role and content are normalised.
    const assistant: AssistantMessage = { ...(message as Record<string, unknown>), role: "assistant", content: content ?? null };
    const finishReason = typeof choice.finish_reason === "string" && choice.finish_reason !== "" ? choice.finish_reason : "stop";
    const usage = parseUsage((body as Record<string, unknown>).usage);
    return usage === undefined ? { message: assistant, finishReason } : { message: assistant, finishReason, usage };
  }
}

function firstChoice(body: unknown): Record<string, unknown> | undefined {
  if (typeof body !== "object" || body === null) return undefined;
  const choices = (body as Record<string, unknown>).choices;
  if (!Array.isArray(choices)) return undefined;
  const first: unknown = choices[0];
  return typeof first === "object" && first !== null ? (first as Record<string, unknown>) : undefined;
}

/** The upstream's own error message when it sent an OpenAI-style body, else what it sent; uncut, unredacted. */
function upstreamErrorMessage(text: string, status: number): string {
  let found: unknown;
  try {
    const body = JSON.parse(text) as unknown;
    if (typeof body === "object" && body !== null) {
      const error = (body as Record<string, unknown>).error;
      found = typeof error === "object" && error !== null ? (error as Record<string, unknown>).message : error;
      found ??= (body as Record<string, unknown>).message;
    }
  } catch {
    found = text.trim();
  }
  return typeof found === "string" && found !== "" ? found : `HTTP ${status}`;
}

/** An upstream answer read to its end: what a non-streamed call needs. */
interface WholeAnswer {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly text: string;
}

/**
 * One exchange read whole through undici's lowest-level `dispatch`, not `Pool.request`: the body stream
 * `request` hands back kept each call's objects alive through young-generation GCs (at 1000 req/s each
 * scavenge copied 1.6 MB and paused ~4 ms with it; 0.03 MB and 0.4 ms with `dispatch`, bench/README.md).
 * Rejects with undici's own errors (or `RequestAbortedError` once `signal` aborts), as `request` would.
 */
function readWhole(pool: Pool, options: Dispatcher.DispatchOptions, signal: AbortSignal, allowance: AnswerAllowance): Promise<WholeAnswer> {
  return new Promise((resolve, reject) => {
    const handler = new WholeAnswerHandler(signal, allowance, resolve, reject);
    try {
      pool.dispatch(options, handler);
    } catch (error) {
      handler.onResponseError(undefined, error instanceof Error ? error : new Error(String(error)));
    }
  });
}

class WholeAnswerHandler implements Dispatcher.DispatchHandler {
  private status = 0;
  private headers: IncomingHttpHeaders = {};
  private readonly chunks: Buffer[] = [];
  private received = 0;
  private controller: Dispatcher.DispatchController | undefined;
  private settled = false;

  constructor(
    private readonly signal: AbortSignal,
    private readonly allowance: AnswerAllowance,
    private readonly resolve: (answer: WholeAnswer) => void,
    private readonly reject: (error: Error) => void,
  ) {
    signal.addEventListener("abort", this.onAbort, { once: true });
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    // Aborted while the request waited in the pool's queue: it must not go out at all.
    if (this.signal.aborted) this.onAbort();
  }

  onResponseStart(_controller: Dispatcher.DispatchController, status: number, headers: IncomingHttpHeaders): void {
    this.status = status;
    this.headers = headers;
    // A declared length is claimed up front: an answer that cannot fit fails before any of it is read.
    const declared = Number(headers["content-length"]);
    if (Number.isSafeInteger(declared) && declared > 0) this.claim(declared);
  }

  onResponseData(_controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.settled) return;
    this.received += chunk.length;
    if (this.claim(this.received)) this.chunks.push(chunk);
  }

  onResponseEnd(): void {
    if (this.settled) return;
    // Decoded before settling, which releases the allowance: the copy counts while it is made.
    const text = utf8Text(this.chunks);
    this.settle();
    this.resolve({ status: this.status, headers: this.headers, text });
  }

  onResponseError(_controller: Dispatcher.DispatchController | undefined, error: Error): void {
    if (this.settle()) this.reject(error);
  }

  /** True the first time: the one answer this exchange gives, after which the abort listener and the allowance are gone. */
  private settle(): boolean {
    if (this.settled) return false;
    this.settled = true;
    this.signal.removeEventListener("abort", this.onAbort);
    this.allowance.release();
    return true;
  }

  /** Claims `bytes` for the answer; past its bounds the exchange is stopped with that error (and false). */
  private claim(bytes: number): boolean {
    try {
      this.allowance.need(bytes);
      return true;
    } catch (error) {
      const reason = error instanceof Error ? error : new Error(String(error));
      if (this.settle()) {
        this.controller?.abort(reason);
        this.reject(reason);
      }
      return false;
    }
  }

  private readonly onAbort = (): void => {
    // Not yet handed to a connection: undici calls onRequestStart later, which aborts it then.
    this.controller?.abort(new undiciErrors.RequestAbortedError());
  };
}

/**
 * One answer's hold on the bounds for answers read whole: its size against `max_response_bytes`, its bytes
 * against the budget all backends share. `release` gives back exactly what was reserved, however the call ends.
 */
class AnswerAllowance {
  private reserved = 0;

  constructor(
    private readonly budget: ResponseBudget,
    private readonly maxBytes: number,
    private readonly backend: string,
  ) {}

  /** Reserves up to `bytes` for the answer in total; throws if that is past either bound. */
  need(bytes: number): void {
    if (bytes > this.maxBytes) throw new UpstreamInvalidResponseError(this.backend, `the answer is larger than ${this.maxBytes} bytes`);
    if (bytes <= this.reserved) return;
    if (!this.budget.tryReserve(bytes - this.reserved)) throw new ResponseBudgetExhaustedError(this.budget.limitBytes);
    this.reserved = bytes;
  }

  release(): void {
    this.budget.release(this.reserved);
    this.reserved = 0;
  }
}

/** As undici's body.text() does: UTF-8, a byte-order mark dropped. */
function utf8Text(chunks: readonly Buffer[]): string {
  const text = Buffer.concat(chunks).toString("utf8");
  return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
}

function describeCause(error: unknown): string {
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    const cause = error.cause instanceof Error ? `: ${error.cause.message}` : "";
    return typeof code === "string" ? `${code} ${error.message}${cause}` : `${error.message}${cause}`;
  }
  return String(error);
}

/** `{url}/v1/chat/completions`; a base URL that already ends in `/v1` (as OpenAI's does) is not doubled. */
function completionsPath(url: URL): string {
  const base = url.pathname.replace(/\/+$/, "");
  return base.endsWith("/v1") ? `${base}/chat/completions` : `${base}/v1/chat/completions`;
}

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

export const httpBackendFactory: BackendFactory<HttpBackendOptions> = {
  type: "http",

  parseOptions(fields: ConfigFields, env: BackendContext["env"]): HttpBackendOptions {
    const url = fields.httpUrl("url");
    const timeoutSeconds = fields.number("timeout", 60, { min: 0, max: 3600, exclusiveMin: true });
    const connectTimeoutSeconds = fields.number("connect_timeout", Math.min(10, timeoutSeconds), { min: 0, max: 3600, exclusiveMin: true });
    const idleTimeoutSeconds = fields.number("idle_timeout", timeoutSeconds, { min: 0, max: 3600, exclusiveMin: true });
    const model = fields.optionalString("model");
    const maxEventBytes = fields.integer("max_event_bytes", DEFAULT_MAX_EVENT_BYTES, BYTE_SETTING_RANGE);
    const maxResponseBytes = fields.integer("max_response_bytes", DEFAULT_MAX_RESPONSE_BYTES, BYTE_SETTING_RANGE);
    const apiKeyEnv = fields.optionalString("api_key_env");
    let apiKey: string | undefined;
    if (apiKeyEnv !== undefined) {
      if (!ENV_NAME.test(apiKeyEnv)) throw new ConfigError(fields.keyPath("api_key_env"), "must be an environment variable name");
      apiKey = env[apiKeyEnv];
      if (apiKey === undefined || apiKey === "") {
        throw new ConfigError(fields.keyPath("api_key_env"), `environment variable ${apiKeyEnv} is not set`);
      }
    }
    return {
      origin: url.origin,
      path: completionsPath(url),
      timeoutSeconds,
      connectTimeoutSeconds,
      idleTimeoutSeconds,
      maxEventBytes,
      maxResponseBytes,
      ...(model === undefined ? {} : { model }),
      ...(apiKey === undefined ? {} : { apiKey }),
    };
  },

  create: (name, options, context) => new HttpBackend(name, options, context.responseBudget),
};

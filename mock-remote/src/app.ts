import { randomBytes, randomUUID } from "node:crypto";
import { hostname } from "node:os";
import express, { type Express, type NextFunction, type Request, type Response } from "express";
import { inputPromptOf, mockTokens, mockUsage, promptOf } from "./usage";

/**
 * Fault knobs, per request. Each can come from a header (for direct calls) or from a `mock` object in the
 * JSON body: the gateway forwards unknown body fields, so tests can steer mock-remote through it. They work
 * the same on the generating routes: /v1/chat/completions, /v1/completions and /v1/responses (embeddings
 * take delay, status, times and the faults reset, hang, malformed and empty).
 */
export interface Knobs {
  /** Wait this long before answering. */
  readonly delayMs: number;
  /** Answer with this HTTP status and an OpenAI error body instead of a completion. */
  readonly status: number | undefined;
  /**
   * malformed: broken JSON (a broken event when streaming); empty: 200 JSON without choices (`{}` from
   * /v1/responses); reset: drop the connection; hang: send nothing more but keep the connection open; error
   * (streaming only): an in-band `event: error` quoting the key, as the 401 body does; deep: valid JSON
   * nested a million levels deep (an answer, or one event when streaming); untyped (/v1/responses streams
   * only, ignored elsewhere): an event whose JSON has no `type`, which a Responses client cannot dispatch.
   */
  readonly fault: Fault | undefined;
  /**
   * Streaming only: how many rounds of content chunks (one chunk per choice each) go out before the fault. At
   * 0, reset, hang and empty happen before the response starts; the other faults follow its opening events
   * (chat's role chunks, the Responses API's created ... content_part.added), before the first content.
   */
  readonly faultAfter: number;
  /** Sent as `retry-after` with an error status. */
  readonly retryAfter: string | undefined;
  /** Streaming: number of content chunks (default: one per word of the answer). */
  readonly chunks: number | undefined;
  /** Streaming: pause between chunks. */
  readonly chunkDelayMs: number;
  /**
   * Apply delay, status and fault only to the first `times` requests with the same key; later ones are
   * answered normally. So a test can make a first call fail and its retry (or a fallback) succeed.
   */
  readonly times: number | undefined;
  /** What `times` counts by: this, else the request's `x-request-id` (which the gateway keeps across retries). */
  readonly key: string | undefined;
}

const FAULTS = ["malformed", "empty", "reset", "hang", "error", "deep", "untyped"] as const;
type Fault = (typeof FAULTS)[number];

export interface MockOptions {
  /** Applied to every request that does not set its own delay. */
  readonly defaultDelayMs: number;
  /** Applied between stream chunks when a request does not set its own. */
  readonly defaultChunkDelayMs?: number;
  readonly modelId: string;
  /**
   * This replica's name, on every answer as `x-mock-instance` and as `system_fingerprint`, so a test of a
   * pool of replicas sees which one answered (default: the host name).
   */
  readonly instance?: string;
  /**
   * Added before every answer of the generating routes (and embeddings), on top of the request's own delay:
   * a replica slower than its peers.
   */
  readonly latencyMs?: number;
  /** What GET /health answers until POST /mock/health changes it (default 200). */
  readonly healthStatus?: number;
}

/** Sent as a header, so only what a header can carry: printable ASCII, no leading or trailing space. */
export function isInstanceName(name: string): boolean {
  return /^[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?$/.test(name);
}

/** What GET /health may be set to answer: anything from success to server error. */
export function isHealthStatus(status: unknown): status is number {
  return typeof status === "number" && Number.isInteger(status) && status >= 200 && status <= 599;
}

/** What mock-remote saw, newest last, so tests can check what the gateway forwarded and when it hung up. */
export interface SeenRequest {
  readonly method: string;
  readonly path: string;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  readonly body: unknown;
  readonly receivedAt: number;
  /** Set when the caller closed the connection before mock-remote finished its answer. */
  closedEarlyAt?: number;
}

const MAX_SEEN = 200;

/** The `status` knob: answers that error status (with `retry-after` when set) and says so. */
function answeredStatus(req: Request, res: Response, knobs: Knobs): boolean {
  if (knobs.status === undefined || knobs.status === 200) return false;
  if (knobs.retryAfter !== undefined) res.setHeader("retry-after", knobs.retryAfter);
  const message = knobs.status === 401 ? keyMessage(req) : `mock-remote was told to answer ${knobs.status}`;
  res.status(knobs.status).json({ error: { message, type: "mock_error", param: null, code: "mock_status" } });
  return true;
}

/**
 * An embeddings input or a completions prompt as texts: a string, strings, token ids (joined), or arrays of
 * token ids.
 */
function inputTexts(input: unknown): string[] {
  if (typeof input === "string") return [input];
  if (!Array.isArray(input)) return [];
  if (input.every((item) => typeof item === "number")) return [input.join(" ")];
  return input.map((item: unknown) => (typeof item === "string" ? item : Array.isArray(item) ? item.join(" ") : ""));
}

function bearerOf(header: string | undefined): string {
  return header?.replace(/^bearer\s+/i, "") ?? "(none)";
}

/**
 * As OpenAI does, an auth error quotes the key it got; it quotes the request's `user` first when there is
 * one, so a client decides where in the message the key lands (the gateway must redact it anywhere).
 */
function keyMessage(req: Request): string {
  const user = record(req.body).user;
  const who = typeof user === "string" ? `User ${user}: ` : "";
  return `${who}Incorrect API key provided: ${bearerOf(req.get("authorization"))}`;
}
/** Keys remembered for `times`; the oldest is forgotten first, so a long load test cannot grow it without end. */
const MAX_TIMES_KEYS = 10_000;
const MAX_DELAY_MS = 10 * 60 * 1000;
const MAX_CHUNKS = 100_000;
/** Far past any JSON depth a gateway could walk or serialise recursively. */
const DEEP_LEVELS = 1_000_000;

/** `[[[...]]]` nested DEEP_LEVELS deep, as text: never built as a value, so mock-remote itself cannot overflow. */
function deepJson(): string {
  return `${"[".repeat(DEEP_LEVELS)}${"]".repeat(DEEP_LEVELS)}`;
}

function record(value: unknown): Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : {};
}

function bounded(text: string | number | undefined, fallback: number, max: number): number {
  const value = Number(text ?? fallback);
  return Number.isFinite(value) ? Math.min(Math.max(Math.floor(value), 0), max) : fallback;
}

function readKnobs(req: Request, options: MockOptions): Knobs {
  const fromBody = record(record(req.body).mock);
  const pick = (bodyKey: string, header: string): string | undefined => {
    const value = fromBody[bodyKey] ?? req.get(header);
    return typeof value === "string" || typeof value === "number" || typeof value === "boolean"
      ? String(value)
      : undefined;
  };
  const status = Number(pick("status", "x-mock-status"));
  const fault = pick("fault", "x-mock-fault");
  const chunks = pick("chunks", "x-mock-chunks");
  const times = pick("times", "x-mock-times");
  return {
    delayMs: bounded(pick("delay_ms", "x-mock-delay-ms"), options.defaultDelayMs, MAX_DELAY_MS),
    status: Number.isInteger(status) && status >= 100 && status <= 599 ? status : undefined,
    fault: FAULTS.find((known) => known === fault),
    faultAfter: bounded(pick("after", "x-mock-after"), 0, MAX_CHUNKS),
    retryAfter: pick("retry_after", "x-mock-retry-after"),
    chunks: chunks === undefined ? undefined : Math.max(1, bounded(chunks, 1, MAX_CHUNKS)),
    chunkDelayMs: bounded(
      pick("chunk_delay_ms", "x-mock-chunk-delay-ms"),
      options.defaultChunkDelayMs ?? 0,
      MAX_DELAY_MS,
    ),
    times: times === undefined ? undefined : bounded(times, 0, MAX_CHUNKS),
    key: pick("key", "x-mock-key"),
  };
}

/** The knobs with this request's delay, status and fault removed: how a request past its `times` is answered. */
function withoutFaults(knobs: Knobs, options: MockOptions): Knobs {
  return { ...knobs, delayMs: options.defaultDelayMs, status: undefined, fault: undefined, retryAfter: undefined };
}

/** Resolves after `ms`, or at once when the client has gone, so a slow answer never outlives its caller. */
function wait(ms: number, res: Response): Promise<void> {
  if (ms <= 0) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    res.once("close", () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/** The answer split the way a model streams it: one piece per word, each after the first with its space. */
function pieces(content: string, count: number | undefined): string[] {
  const words = content.split(" ").map((word, index) => (index === 0 ? word : ` ${word}`));
  if (count === undefined) return words;
  return Array.from({ length: count }, (_, index) => words[index % words.length] ?? "");
}

/** The `n` parameter: how many choices to answer, 1 to 128 (anything else gets the one a plain request gets). */
function choiceCount(n: unknown): number {
  return typeof n === "number" && Number.isInteger(n) && n >= 1 && n <= 128 ? n : 1;
}

/** `[0, 1, ... n - 1]`: one entry per choice. */
function choiceIndexes(n: number): number[] {
  return Array.from({ length: n }, (_, index) => index);
}

/** What an answer that is not sent replaces it with, per route: the faults of a whole (not streamed) answer. */
interface BrokenAnswers {
  readonly malformed: string;
  readonly deep: () => string;
  readonly empty: () => unknown;
}

/** What a stream sends in place of its next piece, per route and fault; made when needed (deep is megabytes). */
interface BrokenEvents {
  readonly malformed: () => string;
  readonly deep: () => string;
  readonly error: () => string;
  /** Only a stream of typed events can leave the type out. */
  readonly untyped?: () => string;
}

/**
 * Ends a stream at its fault: reset drops the connection; hang (and empty) send nothing more, the socket
 * stays open until the caller leaves; the others send their broken event and end. False for a fault the
 * route ignores, whose stream goes on.
 */
function breakStream(res: Response, fault: Fault, broken: BrokenEvents): boolean {
  if (fault === "reset") res.socket?.destroy();
  else if (fault === "untyped" && broken.untyped === undefined) return false;
  else if (fault !== "hang" && fault !== "empty") res.end(broken[fault]?.() ?? "");
  return true;
}

/**
 * One stream's events, each made when it is sent: so a counter inside them (the Responses API's
 * sequence_number) counts up in the order they go out, faults included.
 */
interface StreamPlan {
  /** Before the first piece: chat's role chunks, the Responses API's created ... content_part.added. */
  readonly opening: () => string;
  /** One piece of the answer, for every choice. */
  readonly round: (piece: string) => string;
  /** After the last piece: the finish chunks, usage and `[DONE]`, or the Responses API's done events. */
  readonly closing: () => string;
  readonly broken: BrokenEvents;
}

/** Server-sent events as OpenAI sends them, with the streamed faults placed after `faultAfter` rounds. */
async function streamEvents(res: Response, knobs: Knobs, parts: readonly string[], plan: StreamPlan): Promise<void> {
  // Each write is awaited until flushed, so a reset placed after N chunks really follows those N chunks.
  const send = (text: string) => new Promise<void>((resolve) => res.write(text, () => resolve()));
  res.status(200).set({ "content-type": "text/event-stream", "cache-control": "no-cache", connection: "keep-alive" });
  await send(plan.opening());
  for (const [index, part] of parts.entries()) {
    if (knobs.fault !== undefined && index === knobs.faultAfter && breakStream(res, knobs.fault, plan.broken)) return;
    if (index > 0) await wait(knobs.chunkDelayMs, res);
    if (res.destroyed) return;
    await send(plan.round(part));
  }
  res.end(plan.closing());
}

/** The in-band error chat and completions streams carry: OpenAI's error body under `event: error`. */
function errorEvent(req: Request): string {
  return `event: error\ndata: ${JSON.stringify({ error: { message: keyMessage(req), type: "mock_error", param: null, code: "mock_fault" } })}\n\n`;
}

/** A chat completion streamed, each choice's chunks interleaved word by word, as OpenAI streams `n` > 1. */
function chatStream(
  req: Request,
  answer: { id: string; created: number; model: string },
  prompt: string,
  parts: readonly string[],
  n: number,
  includeUsage: boolean,
): StreamPlan {
  const indexes = choiceIndexes(n);
  const texts = Array<string>(n).fill(parts.join(""));
  const chunk = (index: number, delta: Record<string, unknown>, finishReason: string | null) =>
    `data: ${JSON.stringify({ ...answer, object: "chat.completion.chunk", choices: [{ index, delta, finish_reason: finishReason, logprobs: null }], ...(includeUsage ? { usage: null } : {}) })}\n\n`;
  const usage = () =>
    includeUsage
      ? `data: ${JSON.stringify({ ...answer, object: "chat.completion.chunk", choices: [], usage: mockUsage(prompt, texts) })}\n\n`
      : "";
  return {
    opening: () => indexes.map((index) => chunk(index, { role: "assistant", content: "" }, null)).join(""),
    round: (piece) => indexes.map((index) => chunk(index, { content: piece }, null)).join(""),
    closing: () => `${indexes.map((index) => chunk(index, {}, "stop")).join("")}${usage()}data: [DONE]\n\n`,
    broken: {
      malformed: () => 'data: {"id": "broken", "choices": [\n\n',
      deep: () =>
        `data: {"choices":[{"index":0,"delta":{"content":"x","extra":${deepJson()}},"finish_reason":null}]}\n\ndata: [DONE]\n\n`,
      error: () => errorEvent(req),
    },
  };
}

/** A legacy text completion streamed: no role chunk, a `text` per piece and choice, then one finish per choice. */
function completionStream(
  req: Request,
  answer: { id: string; object: string; created: number; model: string; system_fingerprint: string },
  prompt: string,
  parts: readonly string[],
  n: number,
  includeUsage: boolean,
): StreamPlan {
  const indexes = choiceIndexes(n);
  const texts = Array<string>(n).fill(parts.join(""));
  const chunk = (index: number, text: string, finishReason: string | null) =>
    `data: ${JSON.stringify({ ...answer, choices: [{ text, index, logprobs: null, finish_reason: finishReason }], ...(includeUsage ? { usage: null } : {}) })}\n\n`;
  const usage = () =>
    includeUsage ? `data: ${JSON.stringify({ ...answer, choices: [], usage: mockUsage(prompt, texts) })}\n\n` : "";
  return {
    opening: () => "",
    round: (piece) => indexes.map((index) => chunk(index, piece, null)).join(""),
    closing: () => `${indexes.map((index) => chunk(index, "", "stop")).join("")}${usage()}data: [DONE]\n\n`,
    broken: {
      malformed: () => 'data: {"id": "broken", "choices": [\n\n',
      deep: () =>
        `data: {"choices":[{"text":"x","index":0,"logprobs":null,"finish_reason":null,"extra":${deepJson()}}]}\n\ndata: [DONE]\n\n`,
      error: () => errorEvent(req),
    },
  };
}

/** A Responses API response, in full or (status in_progress, no output, no usage yet) as it starts. */
function responseObject(
  base: Record<string, unknown>,
  prompt: string,
  message: Record<string, unknown> | undefined,
  text: string,
): Record<string, unknown> {
  const inputTokens = mockTokens(prompt);
  const outputTokens = mockTokens(text);
  return {
    ...base,
    status: message === undefined ? "in_progress" : "completed",
    output: message === undefined ? [] : [message],
    usage:
      message === undefined
        ? null
        : {
            input_tokens: inputTokens,
            output_tokens: outputTokens,
            total_tokens: inputTokens + outputTokens,
            input_tokens_details: { cached_tokens: 0 },
            output_tokens_details: { reasoning_tokens: 0 },
          },
  };
}

/** The one message item a response's output holds, done or (empty, in progress) as it starts. */
function messageItem(id: string, text: string | undefined): Record<string, unknown> {
  return {
    id,
    type: "message",
    status: text === undefined ? "in_progress" : "completed",
    role: "assistant",
    content: text === undefined ? [] : [{ type: "output_text", text, annotations: [] }],
  };
}

/**
 * A response streamed as the Responses API does: typed events (`event:` is the data's `type`), numbered by
 * `sequence_number` from 0, in the order the openai SDK's ResponseStream checks, and no `[DONE]`.
 */
function responseStream(
  req: Request,
  base: Record<string, unknown>,
  prompt: string,
  parts: readonly string[],
): StreamPlan {
  let sequence = 0;
  const event = (type: string, fields: Record<string, unknown>) =>
    `event: ${type}\ndata: ${JSON.stringify({ type, sequence_number: sequence++, ...fields })}\n\n`;
  const itemId = `msg_${randomBytes(16).toString("hex")}`;
  const text = parts.join("");
  const at = { item_id: itemId, output_index: 0, content_index: 0 };
  const started = responseObject(base, prompt, undefined, "");
  const part = (partText: string) => ({ type: "output_text", text: partText, annotations: [] });
  return {
    opening: () =>
      [
        event("response.created", { response: started }),
        event("response.in_progress", { response: started }),
        event("response.output_item.added", { output_index: 0, item: messageItem(itemId, undefined) }),
        event("response.content_part.added", { ...at, part: part("") }),
      ].join(""),
    round: (piece) => event("response.output_text.delta", { ...at, delta: piece, logprobs: [] }),
    closing: () =>
      [
        event("response.output_text.done", { ...at, text, logprobs: [] }),
        event("response.content_part.done", { ...at, part: part(text) }),
        event("response.output_item.done", { output_index: 0, item: messageItem(itemId, text) }),
        event("response.completed", { response: responseObject(base, prompt, messageItem(itemId, text), text) }),
      ].join(""),
    broken: {
      malformed: () => 'event: response.output_text.delta\ndata: {"type": "response.output_text.delta", "delta": \n\n',
      deep: () =>
        `event: response.output_text.delta\ndata: {"type":"response.output_text.delta","sequence_number":${sequence++},"item_id":${JSON.stringify(itemId)},"output_index":0,"content_index":0,"delta":"x","logprobs":[],"extra":${deepJson()}}\n\n`,
      error: () =>
        `event: error\ndata: ${JSON.stringify({ type: "error", code: "mock_fault", message: keyMessage(req), param: null, sequence_number: sequence++ })}\n\n`,
      untyped: () => 'event: response.output_text.delta\ndata: {"delta":"x"}\n\n',
    },
  };
}

export function createMockApp(options: MockOptions): { app: Express; seen: SeenRequest[] } {
  const instance = options.instance ?? hostname();
  if (!isInstanceName(instance))
    throw new Error(`mock-remote: instance ${JSON.stringify(instance)} cannot be a header`);
  const latencyMs = bounded(options.latencyMs, 0, MAX_DELAY_MS);
  /** Changed at run time through POST /mock/health, so a test can fail a replica that is already in a pool. */
  let healthStatus = options.healthStatus ?? 200;
  if (!isHealthStatus(healthStatus))
    throw new Error(`mock-remote: health status ${String(options.healthStatus)} is not 200-599`);
  /** GET /health requests so far, so a test can see a gateway's health checks arrive. */
  let healthChecks = 0;
  const seen: SeenRequest[] = [];
  /** Requests so far per `times` key. */
  const counts = new Map<string, number>();
  const countOnce = (key: string): number => {
    const count = (counts.get(key) ?? 0) + 1;
    counts.delete(key); // re-inserted last: Map order is then "least recently used first"
    counts.set(key, count);
    if (counts.size > MAX_TIMES_KEYS) counts.delete(counts.keys().next().value ?? "");
    return count;
  };
  const app = express();
  app.disable("x-powered-by");
  app.disable("etag");
  // First, so errors (a body that is not JSON included), 404s and streams carry it too.
  app.use((_req, res, next) => {
    res.setHeader("x-mock-instance", instance);
    next();
  });
  app.use(express.json({ limit: "10mb" }));
  app.use((req, res, next) => {
    if (req.path.startsWith("/v1/")) {
      const entry: SeenRequest = {
        method: req.method,
        path: req.path,
        headers: { ...req.headers },
        body: req.body,
        receivedAt: Date.now(),
      };
      res.once("close", () => {
        if (!res.writableFinished) entry.closedEarlyAt = Date.now();
      });
      seen.push(entry);
      if (seen.length > MAX_SEEN) seen.shift();
    }
    next();
  });

  app.get("/health", (_req, res) => {
    healthChecks++;
    res.status(healthStatus).json({ status: healthStatus < 300 ? "ok" : "failing" });
  });

  app.get("/v1/models", (_req, res) => {
    res.json({ object: "list", data: [{ id: options.modelId, object: "model", created: 0, owned_by: "mock-remote" }] });
  });

  /**
   * What every generating route does first: `times`, the delay and latency, the faults that replace the whole
   * answer (a streamed one's too when `after` is 0: reset, hang, empty) and the status knob. The knobs to
   * answer with, or undefined when the request is already answered, dropped or left hanging.
   */
  const prepare = async (
    req: Request,
    res: Response,
    streaming: boolean,
    broken: BrokenAnswers,
  ): Promise<Knobs | undefined> => {
    let knobs = readKnobs(req, options);
    if (knobs.times !== undefined && countOnce(knobs.key ?? req.get("x-request-id") ?? "") > knobs.times)
      knobs = withoutFaults(knobs, options);
    // A streamed fault placed after some chunks happens mid-stream, in streamEvents.
    const faultNow = knobs.fault !== undefined && (!streaming || knobs.faultAfter === 0);
    if (faultNow && knobs.fault === "hang") return undefined; // the socket stays open until the caller gives up
    // The instance's latency is not a fault: it stays when `times` has run out.
    await wait(latencyMs + knobs.delayMs, res);
    if (res.destroyed) return undefined;
    if (faultNow && knobs.fault === "reset") {
      res.socket?.destroy();
      return undefined;
    }
    if (faultNow && knobs.fault === "malformed" && !streaming) {
      res.status(200).type("application/json").send(broken.malformed);
      return undefined;
    }
    if (faultNow && knobs.fault === "deep" && !streaming) {
      res.status(200).type("application/json").send(broken.deep());
      return undefined;
    }
    if (faultNow && knobs.fault === "empty") {
      res.json(broken.empty());
      return undefined;
    }
    if (answeredStatus(req, res, knobs)) return undefined;
    return knobs;
  };

  const modelOf = (body: Record<string, unknown>): string =>
    typeof body.model === "string" ? body.model : options.modelId;

  /** Chat completions; `n` choices, each the same answer (streamed: interleaved, one chunk per choice). */
  app.post("/v1/chat/completions", async (req, res) => {
    const body = record(req.body);
    const streaming = body.stream === true;
    const knobs = await prepare(req, res, streaming, {
      malformed: '{"id": "chatcmpl-broken", "choices": [',
      deep: () =>
        `{"choices":[{"index":0,"message":{"role":"assistant","content":"x","extra":${deepJson()}},"finish_reason":"stop"}]}`,
      empty: () => ({ id: `chatcmpl-${randomUUID()}`, object: "chat.completion" }),
    });
    if (knobs === undefined) return;
    const prompt = promptOf(body.messages);
    const n = choiceCount(body.n);
    const answer = {
      id: `chatcmpl-${randomUUID()}`,
      created: Math.floor(Date.now() / 1000),
      model: modelOf(body),
      // OpenAI's field for the serving configuration; clients keep it, so a caller can tell replicas apart.
      system_fingerprint: instance,
    };
    if (streaming) {
      const parts = pieces(`Remote: ${prompt}`, knobs.chunks);
      const includeUsage = record(body.stream_options).include_usage === true;
      await streamEvents(res, knobs, parts, chatStream(req, answer, prompt, parts, n, includeUsage));
      return;
    }
    const content = `Remote: ${prompt}`;
    res.json({
      ...answer,
      object: "chat.completion",
      choices: choiceIndexes(n).map((index) => ({
        index,
        message: { role: "assistant", content },
        finish_reason: "stop",
        logprobs: null,
      })),
      usage: mockUsage(prompt, Array<string>(n).fill(content)),
    });
  });

  /**
   * Legacy text completions: `prompt` as a string, strings (joined with newlines), token ids or arrays of
   * them (each joined with spaces); `n` choices as for chat. The knobs and faults work as for chat.
   */
  app.post("/v1/completions", async (req, res) => {
    const body = record(req.body);
    const streaming = body.stream === true;
    const knobs = await prepare(req, res, streaming, {
      malformed: '{"id": "cmpl-broken", "choices": [',
      deep: () => `{"choices":[{"text":"x","index":0,"logprobs":null,"finish_reason":"stop","extra":${deepJson()}}]}`,
      empty: () => ({ id: `cmpl-${randomUUID()}`, object: "text_completion" }),
    });
    if (knobs === undefined) return;
    const prompt = inputTexts(body.prompt).join("\n");
    const n = choiceCount(body.n);
    const answer = {
      id: `cmpl-${randomUUID()}`,
      object: "text_completion",
      created: Math.floor(Date.now() / 1000),
      model: modelOf(body),
      system_fingerprint: instance,
    };
    if (streaming) {
      const parts = pieces(`Remote: ${prompt}`, knobs.chunks);
      const includeUsage = record(body.stream_options).include_usage === true;
      await streamEvents(res, knobs, parts, completionStream(req, answer, prompt, parts, n, includeUsage));
      return;
    }
    const text = `Remote: ${prompt}`;
    res.json({
      ...answer,
      choices: choiceIndexes(n).map((index) => ({ text, index, logprobs: null, finish_reason: "stop" })),
      usage: mockUsage(prompt, Array<string>(n).fill(text)),
    });
  });

  /**
   * The Responses API: `input` as a string or message items; one message of output_text. Streamed, typed
   * events in the order the openai SDK checks (see responseStream). The knobs and faults work as for chat,
   * plus `untyped` when streaming; `empty` answers `{}`.
   */
  app.post("/v1/responses", async (req, res) => {
    const body = record(req.body);
    const streaming = body.stream === true;
    const knobs = await prepare(req, res, streaming, {
      malformed: '{"id": "resp_broken", "object": "response", "output": [',
      deep: () =>
        `{"id":"resp_deep","object":"response","status":"completed","output":[{"id":"msg_deep","type":"message","role":"assistant","content":[{"type":"output_text","text":"x","annotations":[],"extra":${deepJson()}}]}]}`,
      empty: () => ({}),
    });
    if (knobs === undefined) return;
    const prompt = inputPromptOf(body.input);
    // The fields of OpenAI's Response that a plain text answer sets (status, output and usage: responseObject).
    const base = {
      id: `resp_${randomUUID().replaceAll("-", "")}`,
      object: "response",
      created_at: Math.floor(Date.now() / 1000),
      model: modelOf(body),
      previous_response_id: typeof body.previous_response_id === "string" ? body.previous_response_id : null,
      // The Responses API has no system_fingerprint: the replica's name goes in the metadata clients keep.
      metadata: { instance },
      error: null,
      incomplete_details: null,
      instructions: null,
      parallel_tool_calls: true,
      tool_choice: "auto",
      tools: [],
      temperature: null,
      top_p: null,
    };
    if (streaming) {
      const parts = pieces(`Remote: ${prompt}`, knobs.chunks);
      await streamEvents(res, knobs, parts, responseStream(req, base, prompt, parts));
      return;
    }
    const text = `Remote: ${prompt}`;
    const message = messageItem(`msg_${randomBytes(16).toString("hex")}`, text);
    res.json(responseObject(base, prompt, message, text));
  });

  /**
   * Embeddings: per input a vector of `dimensions` (default 8) floats made from the text's characters, so the
   * same text gets the same vector; `encoding_format: base64` as OpenAI sends it (float32, little-endian).
   * The knobs work as for chat: delay, status, and the faults reset, hang, malformed and empty.
   */
  app.post("/v1/embeddings", async (req, res) => {
    let knobs = readKnobs(req, options);
    if (knobs.times !== undefined && countOnce(knobs.key ?? req.get("x-request-id") ?? "") > knobs.times)
      knobs = withoutFaults(knobs, options);
    if (knobs.fault === "hang") return;
    await wait(latencyMs + knobs.delayMs, res);
    if (res.destroyed) return;
    if (knobs.fault === "reset") {
      res.socket?.destroy();
      return;
    }
    if (knobs.fault === "malformed") {
      res.status(200).type("application/json").send('{"object": "list", "data": [');
      return;
    }
    if (knobs.fault === "empty") {
      res.json({ object: "list" });
      return;
    }
    if (answeredStatus(req, res, knobs)) return;
    const body = record(req.body);
    const texts = inputTexts(body.input);
    const dimensions =
      typeof body.dimensions === "number" && Number.isInteger(body.dimensions) && body.dimensions > 0
        ? Math.min(body.dimensions, 4096)
        : 8;
    const base64 = body.encoding_format === "base64";
    const data = texts.map((text, index) => {
      const vector = new Float32Array(dimensions);
      for (let i = 0; i < dimensions; i++) vector[i] = ((text.charCodeAt(i % Math.max(1, text.length)) || 0) % 97) / 97;
      return {
        object: "embedding",
        index,
        embedding: base64 ? Buffer.from(vector.buffer).toString("base64") : Array.from(vector),
      };
    });
    const tokens = texts.reduce((sum, text) => sum + text.split(/\s+/).filter((word) => word !== "").length, 0);
    res.json({
      object: "list",
      data,
      model: typeof body.model === "string" ? body.model : options.modelId,
      usage: { prompt_tokens: tokens, total_tokens: tokens },
    });
  });

  /** For tests: what the gateway actually sent. */
  app.get("/mock/requests", (_req, res) => {
    res.json(seen);
  });

  /** For tests: what GET /health answers now and how many checks it has had. */
  app.get("/mock/health", (_req, res) => {
    res.json({ status: healthStatus, checks: healthChecks });
  });

  /** For tests: `{"status": 503}` makes GET /health fail from now on (`{"status": 200}` heals it). */
  app.post("/mock/health", (req, res) => {
    const status = record(req.body).status;
    if (!isHealthStatus(status)) {
      res.status(400).json({
        error: {
          message: 'body must be JSON {"status": <integer from 200 to 599>}',
          type: "invalid_request_error",
          param: "status",
          code: null,
        },
      });
      return;
    }
    healthStatus = status;
    res.json({ status: healthStatus, checks: healthChecks });
  });

  app.use((error: unknown, _req: Request, res: Response, _next: NextFunction) => {
    const status =
      typeof (error as { status?: unknown }).status === "number" ? (error as { status: number }).status : 500;
    res.status(status).json({
      error: {
        message: error instanceof Error ? error.message : String(error),
        type: "invalid_request_error",
        param: null,
        code: null,
      },
    });
  });

  app.use((_req, res) => {
    res
      .status(404)
      .json({ error: { message: "not found", type: "invalid_request_error", param: null, code: "unknown_url" } });
  });
  return { app, seen };
}

import { UpstreamInvalidResponseError, UpstreamStreamError } from "../../errors";
import type { AssistantMessage } from "../../schemas/chat";
import { jsonTextExceedsDepth, MAX_JSON_DEPTH } from "../../utils/json-depth";
import { quoteRedacted } from "../../utils/redact";
import { parseUsage } from "../../utils/tokens";
import type { BackendResult, EmbeddingsResult, StreamEvent } from "../backend";

/**
 * The OpenAI chat-completions wire format, read: pure functions from the upstream's text to what the gateway
 * relays, or an UpstreamInvalidResponseError naming `backend` and what was wrong.
 */

/** Upstream error text quoted back to clients is cut to this, so a 5 MB HTML error page stays out of logs. */
export const MAX_QUOTED_ERROR_CHARS = 300;

/** An answer read whole: JSON, and not nested deeper than the gateway will walk or serialise. */
function parseBody(text: string, backend: string): unknown {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    throw new UpstreamInvalidResponseError(backend, "body is not JSON");
  }
  if (jsonTextExceedsDepth(text, MAX_JSON_DEPTH))
    throw new UpstreamInvalidResponseError(backend, `body is nested more than ${MAX_JSON_DEPTH} levels deep`);
  return body;
}

/** An embeddings answer: a JSON object with a `data` array; its other fields pass through. */
export function parseEmbeddings(text: string, backend: string): EmbeddingsResult {
  const body = parseBody(text, backend);
  if (typeof body !== "object" || body === null || Array.isArray(body))
    throw new UpstreamInvalidResponseError(backend, "body is not a JSON object");
  const fields = body as Record<string, unknown>;
  const data = fields.data;
  if (!Array.isArray(data)) throw new UpstreamInvalidResponseError(backend, "no data array");
  const { usage: rawUsage, ...rest } = fields;
  const usage = embeddingsUsage(rawUsage);
  return usage === undefined ? { ...rest, data } : { ...rest, data, usage };
}

/** `prompt_tokens` (and `total_tokens`, else the same) when they are counts; undefined otherwise. */
function embeddingsUsage(value: unknown): EmbeddingsResult["usage"] {
  if (typeof value !== "object" || value === null) return undefined;
  const { prompt_tokens: prompt, total_tokens: total } = value as Record<string, unknown>;
  const isCount = (n: unknown): n is number => typeof n === "number" && Number.isInteger(n) && n >= 0;
  if (!isCount(prompt)) return undefined;
  return { prompt_tokens: prompt, total_tokens: isCount(total) ? total : prompt };
}

/** A non-streamed answer's body. */
export function parseAnswer(text: string, backend: string): BackendResult {
  const body = parseBody(text, backend);
  const choice = firstChoice(body);
  if (choice === undefined) throw new UpstreamInvalidResponseError(backend, "no choices[0]");
  const message = choice.message;
  if (typeof message !== "object" || message === null || Array.isArray(message)) {
    throw new UpstreamInvalidResponseError(backend, "choices[0].message is missing");
  }
  const content = (message as Record<string, unknown>).content;
  if (typeof content !== "string" && content !== null && content !== undefined) {
    throw new UpstreamInvalidResponseError(backend, "choices[0].message.content is not a string");
  }
  // Extra fields such as tool_calls or refusal pass through; role and content are normalised.
  const assistant: AssistantMessage = {
    ...(message as Record<string, unknown>),
    role: "assistant",
    content: content ?? null,
  };
  const finishReason =
    typeof choice.finish_reason === "string" && choice.finish_reason !== "" ? choice.finish_reason : "stop";
  const usage = parseUsage((body as Record<string, unknown>).usage);
  return usage === undefined ? { message: assistant, finishReason } : { message: assistant, finishReason, usage };
}

/**
 * One server-sent event's `data` (of SSE type `type`) as the stream event it holds: a delta and/or finish
 * reason, and/or usage; undefined when it holds none of them. An error event fails the stream with the
 * upstream's message, quoted with `apiKey` redacted.
 */
export function parseStreamEvent(
  type: string | undefined,
  data: string,
  backend: string,
  apiKey?: string,
): StreamEvent | undefined {
  let body: unknown;
  try {
    body = JSON.parse(data);
  } catch {
    throw new UpstreamInvalidResponseError(backend, "a stream event is not JSON");
  }
  if (typeof body !== "object" || body === null || Array.isArray(body))
    throw new UpstreamInvalidResponseError(backend, "a stream event is not a JSON object");
  // Checked before anything walks it: relaying it would overflow the stack in JSON.stringify.
  if (jsonTextExceedsDepth(data, MAX_JSON_DEPTH))
    throw new UpstreamInvalidResponseError(backend, `a stream event is nested more than ${MAX_JSON_DEPTH} levels deep`);
  const fields = body as Record<string, unknown>;
  if (type === "error" || fields.error !== undefined)
    throw new UpstreamStreamError(backend, quoteUpstreamError(data, 502, apiKey));
  let delta: Record<string, unknown> | undefined;
  let finishReason: string | undefined;
  const choice = firstChoice(body);
  if (choice !== undefined) {
    const given = choice.delta;
    if (given !== undefined && given !== null && (typeof given !== "object" || Array.isArray(given))) {
      throw new UpstreamInvalidResponseError(backend, "choices[0].delta is not an object");
    }
    if (given !== undefined && given !== null && hasKeys(given)) delta = given as Record<string, unknown>;
    if (typeof choice.finish_reason === "string" && choice.finish_reason !== "") finishReason = choice.finish_reason;
  } else if (!Array.isArray(fields.choices)) {
    throw new UpstreamInvalidResponseError(backend, "a stream event has no choices");
  }
  const usage = parseUsage(fields.usage);
  if (delta === undefined && finishReason === undefined && usage === undefined) return undefined;
  // One shape for every event, absent fields undefined: no spread of a temporary object per event.
  return { delta, finishReason, usage };
}

/** Whether an object has an own enumerable key, without listing them all. */
function hasKeys(value: object): boolean {
  for (const key in value) if (Object.hasOwn(value, key)) return true;
  return false;
}

/** `choices[0]` when it is an object. */
export function firstChoice(body: unknown): Record<string, unknown> | undefined {
  if (typeof body !== "object" || body === null) return undefined;
  const choices = (body as Record<string, unknown>).choices;
  if (!Array.isArray(choices)) return undefined;
  const first: unknown = choices[0];
  return typeof first === "object" && first !== null ? (first as Record<string, unknown>) : undefined;
}

/** The upstream's own error message when it sent an OpenAI-style body, else what it sent; uncut, unredacted. */
export function upstreamErrorMessage(text: string, status: number): string {
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

/**
 * The upstream's error message, as passed on to the client and the log. Upstreams quote the key they were
 * sent in auth errors ("Incorrect API key provided: sk-..."): the backend's own key must never reach either.
 */
export function quoteUpstreamError(text: string, status: number, apiKey: string | undefined): string {
  return quoteRedacted(upstreamErrorMessage(text, status), apiKey, MAX_QUOTED_ERROR_CHARS);
}

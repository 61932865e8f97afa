import { UpstreamInvalidResponseError, UpstreamStreamError } from "../../errors";
import { type AssistantMessage, MAX_CHOICES } from "../../schemas/chat";
import type { ResponseEvent } from "../../schemas/responses";
import { jsonTextExceedsDepth, MAX_JSON_DEPTH } from "../../utils/json-depth";
import { quoteRedacted } from "../../utils/redact";
import { parseUsage } from "../../utils/tokens";
import type { BackendResult, EmbeddingsResult, ResponseResult, StreamEvent, TextResult } from "../backend";
import { scanChatChunk } from "./chunk-scan";

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

/** A non-streamed chat answer's body: every choice (with `n` > 1, the ones after the first in `more`). */
export function parseAnswer(text: string, backend: string): BackendResult {
  const body = parseBody(text, backend);
  const choice = firstChoice(body);
  if (choice === undefined) throw new UpstreamInvalidResponseError(backend, "no choices[0]");
  const { message, finishReason } = readMessage(choice, 0, backend);
  const fields = body as Record<string, unknown>;
  const usage = parseUsage(fields.usage);
  const choices = fields.choices as unknown[];
  if (choices.length === 1) return usage === undefined ? { message, finishReason } : { message, finishReason, usage };
  const more = choices.slice(1).map((other, index) => {
    if (typeof other !== "object" || other === null)
      throw new UpstreamInvalidResponseError(backend, `choices[${index + 1}] is not an object`);
    return readMessage(other as Record<string, unknown>, index + 1, backend);
  });
  return usage === undefined ? { message, finishReason, more } : { message, finishReason, usage, more };
}

/** One choice's assistant message and finish reason; extra fields (tool_calls, refusal) pass through. */
function readMessage(
  choice: Record<string, unknown>,
  index: number,
  backend: string,
): { message: AssistantMessage; finishReason: string } {
  const message = choice.message;
  if (typeof message !== "object" || message === null || Array.isArray(message)) {
    throw new UpstreamInvalidResponseError(backend, `choices[${index}].message is missing`);
  }
  const content = (message as Record<string, unknown>).content;
  if (typeof content !== "string" && content !== null && content !== undefined) {
    throw new UpstreamInvalidResponseError(backend, `choices[${index}].message.content is not a string`);
  }
  return {
    message: { ...(message as Record<string, unknown>), role: "assistant", content: content ?? null },
    finishReason: finishReasonOf(choice) ?? "stop",
  };
}

/** A legacy text completion's body: a `choices` array of objects with a string `text`. */
export function parseTextAnswer(text: string, backend: string): TextResult {
  const body = parseBody(text, backend);
  const fields = (typeof body === "object" && body !== null ? body : {}) as Record<string, unknown>;
  const given = fields.choices;
  if (!Array.isArray(given) || given.length === 0) throw new UpstreamInvalidResponseError(backend, "no choices[0]");
  const choices = given.map((choice: unknown, index) => {
    if (typeof choice !== "object" || choice === null || Array.isArray(choice))
      throw new UpstreamInvalidResponseError(backend, `choices[${index}] is not an object`);
    const fields = choice as Record<string, unknown>;
    const text = fields.text ?? "";
    if (typeof text !== "string")
      throw new UpstreamInvalidResponseError(backend, `choices[${index}].text is not a string`);
    return { text, logprobs: fields.logprobs ?? null, finishReason: finishReasonOf(fields) ?? "stop" };
  });
  const usage = parseUsage(fields.usage);
  return usage === undefined ? { choices } : { choices, usage };
}

/** A Responses API answer: any JSON object (it passes through; its `usage` is read by the service). */
export function parseResponse(text: string, backend: string): ResponseResult {
  const body = parseBody(text, backend);
  if (typeof body !== "object" || body === null || Array.isArray(body))
    throw new UpstreamInvalidResponseError(backend, "body is not a JSON object");
  return body as ResponseResult;
}

/**
 * A stream event's JSON object, checked: JSON, an object, not nested deeper than the gateway walks. An
 * error event (by its SSE type, or an `error` field when `errorField`) fails the stream with the upstream's
 * message, quoted with `apiKey` redacted.
 */
function eventObject(
  type: string | undefined,
  data: string,
  backend: string,
  apiKey: string | undefined,
  errorField: boolean,
): Record<string, unknown> {
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
  if (type === "error" || (errorField && fields.error !== undefined) || fields.type === "error")
    throw new UpstreamStreamError(backend, quoteUpstreamError(data, 502, apiKey));
  return fields;
}

/** What one choice of a streamed event adds: its delta, or undefined when it adds nothing. */
type DeltaReader = (choice: Record<string, unknown>, index: number, backend: string) => StreamEvent["delta"];

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
  // Most chunks have the one common shape, checked and read without JSON.parse; any other is parsed whole.
  if (type === undefined) {
    const event = scanChatChunk(data);
    if (event !== null) return event;
  }
  return parseStreamEventJson(type, data, backend, apiKey);
}

/** parseStreamEvent through JSON.parse, for any event: what scanChatChunk's reading must always agree with. */
export function parseStreamEventJson(
  type: string | undefined,
  data: string,
  backend: string,
  apiKey?: string,
): StreamEvent | undefined {
  return choicesEvent(eventObject(type, data, backend, apiKey, true), backend, chatDelta);
}

/** As parseStreamEvent, for a legacy text completion's chunks: each choice's delta is `{text}` (and `logprobs`). */
export function parseTextStreamEvent(
  type: string | undefined,
  data: string,
  backend: string,
  apiKey?: string,
): StreamEvent | undefined {
  return choicesEvent(eventObject(type, data, backend, apiKey, true), backend, textDelta);
}

/** One Responses API event: a JSON object with a non-empty string `type`, relayed as it came. */
export function parseResponseEvent(
  type: string | undefined,
  data: string,
  backend: string,
  apiKey?: string,
): ResponseEvent {
  const fields = eventObject(type, data, backend, apiKey, false);
  if (typeof fields.type !== "string" || fields.type === "")
    throw new UpstreamInvalidResponseError(backend, "a stream event has no type");
  return fields as ResponseEvent;
}

const chatDelta: DeltaReader = (choice, index, backend) => {
  const given = choice.delta;
  if (given === undefined || given === null) return undefined;
  if (typeof given !== "object" || Array.isArray(given))
    throw new UpstreamInvalidResponseError(backend, `choices[${index}].delta is not an object`);
  const delta = given as Record<string, unknown>;
  // Most deltas carry content: known without listing keys (JSON.parse makes no inherited `content`).
  return delta.content !== undefined || hasKeys(delta) ? delta : undefined;
};

const textDelta: DeltaReader = (choice, index, backend) => {
  const text = choice.text ?? "";
  if (typeof text !== "string")
    throw new UpstreamInvalidResponseError(backend, `choices[${index}].text is not a string`);
  const logprobs = choice.logprobs;
  if (logprobs === undefined || logprobs === null) return text === "" ? undefined : { text };
  return { text, logprobs };
};

/** The event a chunk's choices make: the first choice in the event itself, any others in `also`. */
function choicesEvent(fields: Record<string, unknown>, backend: string, read: DeltaReader): StreamEvent | undefined {
  const choices = fields.choices;
  if (!Array.isArray(choices)) throw new UpstreamInvalidResponseError(backend, "a stream event has no choices");
  const usage = parseUsage(fields.usage);
  let delta: StreamEvent["delta"];
  let finishReason: string | undefined;
  let index: number | undefined;
  let also: StreamEvent[] | undefined;
  let found = false;
  for (let position = 0; position < choices.length; position++) {
    const choice: unknown = choices[position];
    if (typeof choice !== "object" || choice === null) continue;
    const fields = choice as Record<string, unknown>;
    const added = read(fields, position, backend);
    const finish = finishReasonOf(fields);
    if (added === undefined && finish === undefined) continue;
    const at = choiceIndex(fields.index, position, backend);
    if (!found) {
      found = true;
      delta = added;
      finishReason = finish;
      index = at;
    } else (also ??= []).push({ delta: added, finishReason: finish, index: at });
  }
  if (!found && usage === undefined) return undefined;
  // One shape for every event, absent fields undefined: no spread of a temporary object per event.
  return { delta, finishReason, usage, index, also };
}

/** A choice's `index` (its position when absent); undefined for 0, the only one without `n`. */
function choiceIndex(given: unknown, position: number, backend: string): number | undefined {
  const index = given ?? position;
  if (index === 0) return undefined;
  if (typeof index !== "number" || !Number.isInteger(index) || index < 0 || index >= MAX_CHOICES)
    throw new UpstreamInvalidResponseError(backend, `choices[${position}].index is not a choice index`);
  return index;
}

function finishReasonOf(choice: Record<string, unknown>): string | undefined {
  const reason = choice.finish_reason;
  return typeof reason === "string" && reason !== "" ? reason : undefined;
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

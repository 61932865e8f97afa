import type { NextFunction, Request, Response } from "express";
import { InvalidRequestError } from "../../errors";
import { MAX_CHOICES } from "../../schemas/chat";

const ROLES = ["system", "developer", "user", "assistant", "tool", "function"];
const KNOWN_ROLES = new Set(ROLES);
const ROLE_MESSAGE = `role must be one of ${ROLES.join(", ")}`;
/** Roles whose turn may carry no content (an assistant turn that only called tools, say). */
const CONTENT_OPTIONAL = new Set(["assistant", "tool", "function"]);
const MAX_MODEL_CHARS = 256;

/** `model`, when present: 1 to 256 characters (every endpoint routes by it). */
export function checkModel(body: Record<string, unknown>): InvalidRequestError | undefined {
  const model = body.model;
  if (model === undefined) return undefined;
  if (typeof model !== "string") return new InvalidRequestError("model must be a string", "model");
  // Counting never makes a string longer, nor a non-empty one empty: only long ids need the exact count.
  if (model.length === 0 || (model.length > MAX_MODEL_CHARS && characterCount(model) > MAX_MODEL_CHARS)) {
    return new InvalidRequestError(`model must be 1 to ${MAX_MODEL_CHARS} characters`, "model");
  }
  return undefined;
}

export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * Characters as the gateway has always counted them for `model` (validator.js's isLength, used before):
 * a surrogate pair or a character with its emoji/text presentation selector counts once.
 */
function characterCount(text: string): number {
  const selectors = text.match(/[^\uFE0F\uFE0E][\uFE0F\uFE0E]/g)?.length ?? 0;
  const pairs = text.match(/[\uD800-\uDBFF][\uDC00-\uDFFF]/g)?.length ?? 0;
  return text.length - selectors - pairs;
}

function contentProblem(message: Record<string, unknown>, path: string): string | undefined {
  const value = message.content;
  if (value === undefined || value === null)
    return CONTENT_OPTIONAL.has(message.role as string) ? undefined : `${path} is required`;
  if (typeof value === "string") return undefined;
  if (!Array.isArray(value)) return `${path} must be a string or an array of content parts`;
  for (let index = 0; index < value.length; index++) {
    const part: unknown = value[index];
    if (!isObject(part) || typeof part.type !== "string")
      return `${path}[${index}] must be an object with a string 'type'`;
    if (part.type === "text" && typeof part.text !== "string") return `${path}[${index}].text must be a string`;
  }
  return undefined;
}

export function numberProblem(
  body: Record<string, unknown>,
  field: string,
  min: number,
  max: number,
  integer = false,
): InvalidRequestError | undefined {
  const value = body[field];
  if (value === undefined || value === null) return undefined;
  if (
    typeof value === "number" &&
    Number.isFinite(value) &&
    value >= min &&
    value <= max &&
    (!integer || Number.isInteger(value))
  )
    return undefined;
  return new InvalidRequestError(
    `${field} must be ${integer ? "an integer" : "a number"} from ${min} to ${max}`,
    field,
  );
}

/**
 * The fields the gateway itself depends on, checked strictly; every other field passes through to the
 * backend, which knows its own parameters best. The first failure, in this order, is the answer: the body,
 * `model`, every message's shape, then every role, then every content, then the optional fields.
 *
 * Written out by hand: as express-validator chains, the same checks took a third of the gateway's CPU per
 * request (wildcard paths like `messages.*.role` are expanded through lodash on every request), and the
 * messages and `param` paths below are exactly the ones those chains produced.
 */
export function checkChatRequest(body: unknown): InvalidRequestError | undefined {
  if (!isObject(body)) return new InvalidRequestError("The request body must be a JSON object", null);
  const modelProblem = checkModel(body);
  if (modelProblem !== undefined) return modelProblem;
  const messages = body.messages;
  if (messages === undefined || messages === null) return new InvalidRequestError("messages is required", "messages");
  if (!Array.isArray(messages) || messages.length === 0)
    return new InvalidRequestError("messages must be a non-empty array", "messages");
  for (let index = 0; index < messages.length; index++) {
    if (!isObject(messages[index]))
      return new InvalidRequestError("each message must be an object", `messages[${index}]`);
  }
  const checked = messages as Record<string, unknown>[];
  for (let index = 0; index < checked.length; index++) {
    const role = checked[index]?.role;
    if (typeof role !== "string" || !KNOWN_ROLES.has(role))
      return new InvalidRequestError(ROLE_MESSAGE, `messages[${index}].role`);
  }
  for (let index = 0; index < checked.length; index++) {
    const message = checked[index];
    const problem = message === undefined ? undefined : contentProblem(message, `messages[${index}].content`);
    if (problem !== undefined) return new InvalidRequestError(problem, `messages[${index}].content`);
  }
  return (
    streamProblem(body) ??
    numberProblem(body, "n", 1, MAX_CHOICES, true) ??
    numberProblem(body, "temperature", 0, 2) ??
    numberProblem(body, "top_p", 0, 1) ??
    numberProblem(body, "max_tokens", 1, 10_000_000, true) ??
    numberProblem(body, "max_completion_tokens", 1, 10_000_000, true)
  );
}

/** `stream` and `stream_options.include_usage`, when present: booleans (the gateway acts on both). */
export function streamProblem(body: Record<string, unknown>): InvalidRequestError | undefined {
  const stream = body.stream;
  if (stream !== undefined && stream !== null && typeof stream !== "boolean")
    return new InvalidRequestError("stream must be a boolean", "stream");
  const streamOptions = body.stream_options;
  if (streamOptions !== undefined && streamOptions !== null) {
    if (!isObject(streamOptions)) return new InvalidRequestError("stream_options must be an object", "stream_options");
    const includeUsage = streamOptions.include_usage;
    if (includeUsage !== undefined && includeUsage !== null && typeof includeUsage !== "boolean") {
      return new InvalidRequestError("stream_options.include_usage must be a boolean", "stream_options.include_usage");
    }
  }
  return undefined;
}

/** Turns the first failed check into a 400 that names the field, as OpenAI's `param` does. */
export function rejectInvalid(req: Request, _res: Response, next: NextFunction): void {
  next(checkChatRequest(req.body));
}

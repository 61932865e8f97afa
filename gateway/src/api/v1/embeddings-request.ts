import type { NextFunction, Request, Response } from "express";
import { InvalidRequestError } from "../../errors";
import { checkModel, isObject } from "./chat-request";

/** OpenAI's own bound on inputs per request; past it an upstream would refuse the request anyway. */
export const MAX_EMBEDDING_INPUTS = 2048;
/** Far past any model's dimension count; the echo backend builds vectors this long. */
export const MAX_DIMENSIONS = 16_384;

/**
 * A text input field (embeddings' `input`, completions' `prompt`): required; a string, or 1 to
 * MAX_EMBEDDING_INPUTS strings, token ids, or token id arrays.
 */
export function textInputProblem(body: Record<string, unknown>, field: string): InvalidRequestError | undefined {
  const input = body[field];
  if (input === undefined || input === null) return new InvalidRequestError(`${field} is required`, field);
  if (typeof input === "string") return undefined;
  const shape = `${field} must be a string, an array of strings, an array of token ids, or an array of token id arrays`;
  if (!Array.isArray(input) || input.length === 0) return new InvalidRequestError(shape, field);
  if (input.length > MAX_EMBEDDING_INPUTS)
    return new InvalidRequestError(`${field} must have at most ${MAX_EMBEDDING_INPUTS} items`, field);
  const allStrings = input.every((item) => typeof item === "string");
  if (!allStrings && !isTokenIds(input) && !input.every(isTokenIds)) return new InvalidRequestError(shape, field);
  return undefined;
}

function isTokenIds(value: unknown): value is number[] {
  return Array.isArray(value) && value.length > 0 && value.every((item) => Number.isInteger(item) && item >= 0);
}

/**
 * The fields the gateway depends on (`model` to route, `input` to count and to answer with echo,
 * `encoding_format` and `dimensions` which echo honours); everything else passes through to the backend.
 */
export function checkEmbeddingsRequest(body: unknown): InvalidRequestError | undefined {
  if (!isObject(body)) return new InvalidRequestError("The request body must be a JSON object", null);
  const modelProblem = checkModel(body);
  if (modelProblem !== undefined) return modelProblem;
  const inputProblem = textInputProblem(body, "input");
  if (inputProblem !== undefined) return inputProblem;
  const format = body.encoding_format;
  if (format !== undefined && format !== null && format !== "float" && format !== "base64")
    return new InvalidRequestError("encoding_format must be float or base64", "encoding_format");
  const dimensions = body.dimensions;
  if (
    dimensions !== undefined &&
    dimensions !== null &&
    !(Number.isInteger(dimensions) && (dimensions as number) >= 1 && (dimensions as number) <= MAX_DIMENSIONS)
  )
    return new InvalidRequestError(`dimensions must be an integer from 1 to ${MAX_DIMENSIONS}`, "dimensions");
  return undefined;
}

/** Turns the first failed check into a 400 that names the field. */
export function rejectInvalidEmbeddings(req: Request, _res: Response, next: NextFunction): void {
  next(checkEmbeddingsRequest(req.body));
}

import type { NextFunction, Request, Response } from "express";
import { InvalidRequestError } from "../../errors";
import { checkModel, isObject, numberProblem } from "./chat-request";

/**
 * The fields the gateway depends on for the Responses API (`model` to route, `input` to count and echo,
 * `stream`); everything else, `previous_response_id`, tools and stored state included, passes through
 * unchanged: it is the upstream's business.
 */
export function checkResponsesRequest(body: unknown): InvalidRequestError | undefined {
  if (!isObject(body)) return new InvalidRequestError("The request body must be a JSON object", null);
  const modelProblem = checkModel(body);
  if (modelProblem !== undefined) return modelProblem;
  const input = body.input;
  if (input !== undefined && input !== null && typeof input !== "string") {
    if (!Array.isArray(input)) return new InvalidRequestError("input must be a string or an array of items", "input");
    for (let index = 0; index < input.length; index++)
      if (!isObject(input[index]))
        return new InvalidRequestError("each input item must be an object", `input[${index}]`);
  }
  const stream = body.stream;
  if (stream !== undefined && stream !== null && typeof stream !== "boolean")
    return new InvalidRequestError("stream must be a boolean", "stream");
  const previous = body.previous_response_id;
  if (previous !== undefined && previous !== null && typeof previous !== "string")
    return new InvalidRequestError("previous_response_id must be a string", "previous_response_id");
  return (
    numberProblem(body, "temperature", 0, 2) ??
    numberProblem(body, "top_p", 0, 1) ??
    numberProblem(body, "max_output_tokens", 1, 10_000_000, true)
  );
}

/** Turns the first failed check into a 400 that names the field. */
export function rejectInvalidResponses(req: Request, _res: Response, next: NextFunction): void {
  next(checkResponsesRequest(req.body));
}

import type { NextFunction, Request, Response } from "express";
import { InvalidRequestError } from "../../errors";
import { MAX_CHOICES } from "../../schemas/chat";
import { checkModel, isObject, numberProblem, streamProblem } from "./chat-request";
import { textInputProblem } from "./embeddings-request";

/**
 * The fields a legacy completion needs the gateway to understand (`model` to route, `prompt` to count and
 * echo, `stream`, `n` for the choices it relays); everything else passes through to the backend.
 */
export function checkCompletionsRequest(body: unknown): InvalidRequestError | undefined {
  if (!isObject(body)) return new InvalidRequestError("The request body must be a JSON object", null);
  return (
    checkModel(body) ??
    textInputProblem(body, "prompt") ??
    streamProblem(body) ??
    numberProblem(body, "n", 1, MAX_CHOICES, true) ??
    numberProblem(body, "temperature", 0, 2) ??
    numberProblem(body, "top_p", 0, 1) ??
    numberProblem(body, "max_tokens", 0, 10_000_000, true)
  );
}

/** Turns the first failed check into a 400 that names the field. */
export function rejectInvalidCompletions(req: Request, _res: Response, next: NextFunction): void {
  next(checkCompletionsRequest(req.body));
}

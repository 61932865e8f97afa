import express, { type NextFunction, type Request, type Response, Router } from "express";
import { body, type Meta, validationResult } from "express-validator";
import { InvalidRequestError } from "../../errors";
import { loopGuard } from "../../middleware/loop-guard";
import { contextOf, type RequestContext } from "../../middleware/request-context";
import type { ChatCompletionRequest } from "../../schemas/chat";
import type { CallOptions, InferenceService } from "../../services/inference";
import { methodNotAllowed } from "../method-not-allowed";
import { sendEventStream } from "./event-stream";

const ROLES = ["system", "developer", "user", "assistant", "tool", "function"];
/** Roles whose turn may carry no content (an assistant turn that only called tools, say). */
const CONTENT_OPTIONAL = new Set(["assistant", "tool", "function"]);

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function roleOf(req: Meta["req"], path: string): unknown {
  const index = /^messages\[(\d+)\]/.exec(path)?.[1];
  const messages: unknown = (req.body as Record<string, unknown> | undefined)?.messages;
  if (index === undefined || !Array.isArray(messages)) return undefined;
  const message: unknown = messages[Number(index)];
  return isObject(message) ? message.role : undefined;
}

function checkContent(value: unknown, { req, path }: Meta): true {
  if (value === undefined || value === null) {
    if (CONTENT_OPTIONAL.has(String(roleOf(req, path)))) return true;
    throw new Error(`${path} is required`);
  }
  if (typeof value === "string") return true;
  if (!Array.isArray(value)) throw new Error(`${path} must be a string or an array of content parts`);
  value.forEach((part: unknown, index) => {
    if (!isObject(part) || typeof part.type !== "string") throw new Error(`${path}[${index}] must be an object with a string 'type'`);
    if (part.type === "text" && typeof part.text !== "string") throw new Error(`${path}[${index}].text must be a string`);
  });
  return true;
}

function optionalNumber(field: string, min: number, max: number, integer = false) {
  return body(field)
    .optional({ values: "null" })
    .custom((value: unknown) => typeof value === "number" && Number.isFinite(value) && value >= min && value <= max && (!integer || Number.isInteger(value)))
    .withMessage(`${field} must be ${integer ? "an integer" : "a number"} from ${min} to ${max}`);
}

/**
 * The fields the gateway itself depends on, checked strictly; every other field passes through to the
 * backend, which knows its own parameters best.
 */
const validateChatRequest = [
  body().custom(isObject).withMessage("The request body must be a JSON object").bail({ level: "request" }),
  body("model").optional().isString().withMessage("model must be a string").bail().isLength({ min: 1, max: 256 }).withMessage("model must be 1 to 256 characters"),
  body("messages").exists({ values: "null" }).withMessage("messages is required").bail().isArray({ min: 1 }).withMessage("messages must be a non-empty array"),
  body("messages.*").custom(isObject).withMessage("each message must be an object").bail(),
  body("messages.*.role").isIn(ROLES).withMessage(`role must be one of ${ROLES.join(", ")}`),
  body("messages.*.content").custom(checkContent),
  body("stream").optional({ values: "null" }).isBoolean({ strict: true }).withMessage("stream must be a boolean"),
  body("stream_options").optional({ values: "null" }).custom(isObject).withMessage("stream_options must be an object"),
  body("stream_options.include_usage").optional({ values: "null" }).isBoolean({ strict: true }).withMessage("stream_options.include_usage must be a boolean"),
  body("n").optional({ values: "null" }).custom((value: unknown) => value === 1).withMessage("n must be 1: the gateway returns one choice"),
  optionalNumber("temperature", 0, 2),
  optionalNumber("top_p", 0, 1),
  optionalNumber("max_tokens", 1, 10_000_000, true),
  optionalNumber("max_completion_tokens", 1, 10_000_000, true),
];

/** Turns the first validation failure into a 400 that names the field, as OpenAI's `param` does. */
function rejectInvalid(req: Request, _res: Response, next: NextFunction): void {
  const result = validationResult(req);
  if (result.isEmpty()) return next();
  const [first] = result.array({ onlyFirstError: true });
  const param = first !== undefined && first.type === "field" ? first.path || null : null;
  next(new InvalidRequestError(String(first?.msg ?? "invalid request"), param));
}

/**
 * What the service needs from the request. It reports each backend it turns to (the routed one, then any
 * fallback), so the access log, the metrics and `x-gateway-backend` name the backend whose answer was sent.
 */
function callOptions(res: Response, context: RequestContext): CallOptions {
  return {
    requestId: context.requestId,
    signal: context.signal,
    startedAt: context.startedAt,
    hops: context.hops,
    logger: context.logger,
    onBackend: (name) => {
      context.backend = name;
      res.setHeader("x-gateway-backend", name);
    },
  };
}

export function createChatCompletionsRouter(deps: { readonly inference: InferenceService; readonly maxBodyBytes: number; readonly maxHops: number }): Router {
  const router = Router();
  // Any content type is read as JSON: `curl -d` sends form encoding by default, and a body that is not
  // JSON is still refused by the parser with a clear 400.
  const parseJson = express.json({ limit: deps.maxBodyBytes, type: () => true });
  router
    .route("/v1/chat/completions")
    .post(loopGuard(deps.maxHops), parseJson, validateChatRequest, rejectInvalid, async (req: Request, res: Response) => {
      const request = req.body as ChatCompletionRequest;
      const context = contextOf(res);
      const backend = deps.inference.route(request.model);
      const options = callOptions(res, context);
      if (request.stream === true) {
        context.stream = true;
        await sendEventStream(res, await deps.inference.openStream(backend, request, options), context);
      } else {
        res.json(await deps.inference.complete(backend, request, options));
      }
    })
    .all(methodNotAllowed("POST"));
  return router;
}

import { type Request, type Response, Router } from "express";
import { contextOf } from "../../middleware/request-context";
import type { ChatCompletionRequest } from "../../schemas/chat";
import { methodNotAllowed } from "../method-not-allowed";
import { rejectInvalid } from "./chat-request";
import { ChunkLines, sendEventStream } from "./event-stream";
import { inferenceChecks, type InferenceRouteDeps, sendJson } from "./inference-route";

export function createChatCompletionsRouter(deps: InferenceRouteDeps): Router {
  const router = Router();
  const checks = inferenceChecks(deps, rejectInvalid);
  router
    .route("/v1/chat/completions")
    .post(...checks, async (req: Request, res: Response) => {
      // The checks above validated the body; the request's context is its CallOptions.
      const request = req.body as ChatCompletionRequest;
      const context = contextOf(res);
      if (request.stream === true) {
        sendEventStream(res, await deps.inference.openChatStream(request, context), context, new ChunkLines());
      } else {
        sendJson(res, await deps.inference.completeChat(request, context));
      }
    })
    .all(methodNotAllowed("POST"));
  return router;
}

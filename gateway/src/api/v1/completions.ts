import { type Request, type Response, Router } from "express";
import { contextOf } from "../../middleware/request-context";
import type { CompletionsRequest } from "../../schemas/completions";
import { methodNotAllowed } from "../method-not-allowed";
import { rejectInvalidCompletions } from "./completions-request";
import { ChunkLines, sendEventStream } from "./event-stream";
import { inferenceChecks, type InferenceRouteDeps, sendJson } from "./inference-route";

/** `POST /v1/completions` (legacy text completions): the same checks as chat, streamed or whole. */
export function createCompletionsRouter(deps: InferenceRouteDeps): Router {
  const router = Router();
  router
    .route("/v1/completions")
    .post(...inferenceChecks(deps, rejectInvalidCompletions), async (req: Request, res: Response) => {
      const request = req.body as CompletionsRequest;
      const context = contextOf(res);
      if (request.stream === true) {
        sendEventStream(res, await deps.inference.openTextStream(request, context), context, new ChunkLines());
      } else {
        sendJson(res, await deps.inference.completeText(request, context));
      }
    })
    .all(methodNotAllowed("POST"));
  return router;
}

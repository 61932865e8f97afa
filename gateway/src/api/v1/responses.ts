import { type Request, type Response, Router } from "express";
import { contextOf } from "../../middleware/request-context";
import type { ResponsesRequest } from "../../schemas/responses";
import { methodNotAllowed } from "../method-not-allowed";
import { ResponseEventLines, sendEventStream } from "./event-stream";
import { inferenceChecks, type InferenceRouteDeps, sendJson } from "./inference-route";
import { rejectInvalidResponses } from "./responses-request";

/** `POST /v1/responses`: the same checks as chat; the upstream's Response, or its typed events, relayed. */
export function createResponsesRouter(deps: InferenceRouteDeps): Router {
  const router = Router();
  router
    .route("/v1/responses")
    .post(...inferenceChecks(deps, rejectInvalidResponses), async (req: Request, res: Response) => {
      const request = req.body as ResponsesRequest;
      const context = contextOf(res);
      if (request.stream === true) {
        const events = await deps.inference.openResponseStream(request, context);
        sendEventStream(res, events, context, new ResponseEventLines());
      } else {
        sendJson(res, await deps.inference.respond(request, context));
      }
    })
    .all(methodNotAllowed("POST"));
  return router;
}

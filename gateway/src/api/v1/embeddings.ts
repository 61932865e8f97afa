import { type Request, type Response, Router } from "express";
import { contextOf } from "../../middleware/request-context";
import type { EmbeddingsRequest } from "../../schemas/embeddings";
import { methodNotAllowed } from "../method-not-allowed";
import { rejectInvalidEmbeddings } from "./embeddings-request";
import { inferenceChecks, type InferenceRouteDeps, sendJson } from "./inference-route";

/** `POST /v1/embeddings`: the same checks as chat completions, then one service call. */
export function createEmbeddingsRouter(deps: InferenceRouteDeps): Router {
  const router = Router();
  router
    .route("/v1/embeddings")
    .post(...inferenceChecks(deps, rejectInvalidEmbeddings), async (req: Request, res: Response) => {
      sendJson(res, await deps.inference.embed(req.body as EmbeddingsRequest, contextOf(res)));
    })
    .all(methodNotAllowed("POST"));
  return router;
}

import { Router } from "express";
import { GatewayError } from "../../errors";
import { contextOf } from "../../middleware/request-context";
import { methodNotAllowed } from "../method-not-allowed";

interface ModelObject {
  readonly id: string;
  readonly object: "model";
  readonly created: number;
  readonly owned_by: string;
}

/** A model id a client may ask for (a configured backend's name) and who serves it (the backend's type). */
export interface ModelInfo {
  readonly id: string;
  readonly ownedBy: string;
}

/** `GET /v1/models`: each configured backend is a model id a client may ask for. */
export function createModelsRouter(deps: { readonly models: readonly ModelInfo[]; readonly startedAt: Date }): Router {
  const created = Math.floor(deps.startedAt.getTime() / 1000);
  const models: ModelObject[] = deps.models.map((model) => ({
    id: model.id,
    object: "model",
    created,
    owned_by: model.ownedBy,
  }));
  const byId = new Map(models.map((model) => [model.id, model]));
  const router = Router();
  router
    .route("/v1/models")
    .get((_req, res) => {
      // A key limited to some backends sees only those: the list is what it may ask for.
      const allowed = contextOf(res).allowlist?.backends;
      res.json({
        object: "list",
        data: allowed === undefined ? models : models.filter((model) => allowed.has(model.id)),
      });
    })
    .all(methodNotAllowed("GET", "HEAD"));
  router
    .route("/v1/models/:id")
    .get((req, res) => {
      const model = byId.get(req.params.id);
      const allowed = contextOf(res).allowlist?.backends;
      if (model === undefined || (allowed !== undefined && !allowed.has(model.id))) {
        throw new GatewayError(
          `The model '${req.params.id}' does not exist.`,
          404,
          "invalid_request_error",
          "model_not_found",
          "model",
        );
      }
      res.json(model);
    })
    .all(methodNotAllowed("GET", "HEAD"));
  return router;
}

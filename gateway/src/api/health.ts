import { Router } from "express";
import type { Lifecycle } from "../services/lifecycle";
import { methodNotAllowed } from "./method-not-allowed";

/** `/health`: the process serves. `/ready`: it should get traffic (config loaded, not shutting down). */
export function createHealthRouter(deps: { readonly lifecycle: Lifecycle }): Router {
  const router = Router();
  router
    .route("/health")
    .get((_req, res) => {
      res.json({ status: "ok" });
    })
    .all(methodNotAllowed("GET", "HEAD"));
  router
    .route("/ready")
    .get((_req, res) => {
      if (deps.lifecycle.isReady) res.json({ status: "ready" });
      else res.status(503).set("retry-after", "1").json({ status: "shutting_down" });
    })
    .all(methodNotAllowed("GET", "HEAD"));
  return router;
}

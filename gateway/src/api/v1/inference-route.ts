import type { NextFunction, Request, RequestHandler, Response } from "express";
import { admit, precheck } from "../../access/middleware";
import type { AdmissionControl } from "../../access/shared-admission";
import type { AccessMetrics } from "../../access/metrics";
import { UnsupportedMediaTypeError } from "../../errors";
import { jsonBody } from "../../middleware/json-body";
import { loopGuard } from "../../middleware/loop-guard";
import type { InferenceService } from "../../services/inference";

/** What every inference endpoint's router needs. */
export interface InferenceRouteDeps {
  readonly inference: InferenceService;
  readonly admission: AdmissionControl;
  readonly accessMetrics: AccessMetrics;
  readonly maxBodyBytes: number;
  readonly bodyTimeoutSeconds: number;
  readonly maxHops: number;
}

/**
 * JSON only: a body sent as a form or as text/plain is what a web page can send cross-site without a CORS
 * preflight, so refusing it (415) keeps browsers from spending through a gateway on localhost. A missing
 * Content-Type is read as JSON, since no browser sends a body without one.
 */
export function requireJson(req: Request, _res: Response, next: NextFunction): void {
  const type = req.headers["content-type"];
  if (type === undefined || JSON_TYPE.test(type)) {
    next();
    return;
  }
  next(new UnsupportedMediaTypeError(type));
}

const JSON_TYPE = /^application\/(?:[\w.+-]+\+)?json\s*(?:;|$)/i;

/**
 * What `res.json` sends for a 200 to a POST (the same headers and bytes) without Express's generic send():
 * its replacer and spacing lookups, content-type negotiation and freshness checks cost about 5% of the
 * gateway's CPU per request (bench/RESULTS.md).
 */
export function sendJson(res: Response, body: unknown): void {
  const text = JSON.stringify(body);
  res.setHeader("Content-Type", "application/json; charset=utf-8");
  res.setHeader("Content-Length", Buffer.byteLength(text));
  res.end(text);
}

/**
 * The checks every inference endpoint runs before its handler, in order, ending with the endpoint's own
 * body check. Rates are checked before the body is read, the slot is taken after: a trickling body holds none.
 */
export function inferenceChecks(deps: InferenceRouteDeps, validate: RequestHandler): RequestHandler[] {
  // requireJson has already refused other types; this also reads a body sent without a Content-Type.
  const parseJson = jsonBody({ maxBytes: deps.maxBodyBytes, timeoutSeconds: deps.bodyTimeoutSeconds });
  return [
    loopGuard(deps.maxHops),
    precheck(deps.admission, deps.accessMetrics),
    requireJson,
    parseJson,
    admit(deps.admission, deps.accessMetrics),
    validate,
  ];
}

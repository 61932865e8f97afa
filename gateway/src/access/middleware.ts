import type { NextFunction, Request, Response } from "express";
import { AuthenticationError } from "../errors";
import { type KeyAllowlist, contextOf, outcomeStatus, type RequestContext } from "../middleware/request-context";
import { AdmissionError, type Ticket } from "./admission";
import type { ApiKeyConfig } from "./config";
import type { KeyRing } from "./keys";
import { tokensToReserve } from "./reservation";
import type { AdmissionControl } from "./shared-admission";
import { type AccessMetrics, NO_KEY } from "./metrics";

/**
 * Auth on: every request it guards must carry a configured key (`Authorization: Bearer <key>`), else 401.
 * The key's name, never the key, goes into the request context for logs, metrics and limits.
 */
export function authenticate(keys: KeyRing, metrics: AccessMetrics) {
  // One allowlist per key, made on its first request: the inference service checks the routed backend against it.
  const allowlists = new WeakMap<ApiKeyConfig, KeyAllowlist>();
  return (req: Request, res: Response, next: NextFunction): void => {
    let key: ApiKeyConfig;
    try {
      key = keys.identify(req.headers.authorization);
    } catch (error) {
      if (error instanceof AuthenticationError)
        metrics.rejected(NO_KEY, error.code === "missing_api_key" ? "missing_api_key" : "invalid_api_key");
      next(error);
      return;
    }
    const context = contextOf(res);
    context.key = key.name;
    if (key.backends !== undefined) {
      let allowlist = allowlists.get(key);
      if (allowlist === undefined)
        allowlists.set(key, (allowlist = { key: key.name, backends: new Set(key.backends) }));
      context.allowlist = allowlist;
    }
    next();
  };
}

function clientOf(req: Request, context: RequestContext): { readonly key?: string; readonly address: string } {
  return { address: req.socket.remoteAddress ?? "unknown", ...(context.key === undefined ? {} : { key: context.key }) };
}

/** Sends a limit's refusal on as its 429 or 503, counted; anything else is a bug, rethrown. */
function refuse(error: unknown, context: RequestContext, metrics: AccessMetrics, next: NextFunction): void {
  if (!(error instanceof AdmissionError)) throw error;
  metrics.rejected(context.key ?? NO_KEY, error.reason);
  next(error.error);
}

/** A client over its requests or tokens per minute is refused (429) before its body is read. */
export function precheck(admission: AdmissionControl, metrics: AccessMetrics) {
  return (req: Request, res: Response, next: NextFunction): void => {
    const context = contextOf(res);
    try {
      admission.precheck(clientOf(req, context));
    } catch (error) {
      refuse(error, context, metrics, next);
      return;
    }
    next();
  };
}

/**
 * Gives the ticket back when the response closes, charged with the tokens the request used. Made outside
 * `admit`'s closures, which hold Express's `next` and with it every routing closure of the request: the
 * close listener would keep them for as long as a stream lasts.
 */
function endsWithResponse(ticket: Ticket, res: Response, context: RequestContext, metrics: AccessMetrics): void {
  const end = (): void => {
    // Charged first: a shared lease (shared-admission.ts) ends with its tokens in one message.
    ticket.charge(context.tokensUsed);
    ticket.release();
    if (context.key !== undefined) {
      metrics.requestEnded(context.key, outcomeStatus(res, context));
      metrics.tokensUsed(context.key, context.tokensUsed);
    }
  };
  // A client that left while the shared books answered: its slot goes back at once.
  if (res.closed) end();
  else res.once("close", end);
}

/**
 * The request's turn under the limits (see Admission), taken once its body has arrived (a body still
 * trickling in holds no slot): refused with 429 or 503, else admitted until its response closes, when the
 * tokens it used are charged to its client.
 */
export function admit(admission: AdmissionControl, metrics: AccessMetrics) {
  return (req: Request, res: Response, next: NextFunction): void => {
    const context = contextOf(res);
    const admitted = (ticket: Ticket): void => endsWithResponse(ticket, res, context, metrics);
    let ticket: Ticket | Promise<Ticket>;
    try {
      // The body has arrived: what the request may use is reserved against its tokens per minute.
      ticket = admission.admit({ ...clientOf(req, context), reserve: tokensToReserve(req.body) });
    } catch (error) {
      refuse(error, context, metrics, next);
      return;
    }
    if (!(ticket instanceof Promise)) {
      admitted(ticket);
      next();
      return;
    }
    ticket.then(
      (taken) => {
        admitted(taken);
        if (!res.closed) next();
      },
      (error: unknown) => {
        if (error instanceof AdmissionError) refuse(error, context, metrics, next);
        else next(error);
      },
    );
  };
}

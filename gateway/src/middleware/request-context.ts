import type { NextFunction, Request, Response } from "express";
import type { Logger } from "winston";
import { requestIdFrom } from "../utils/request-id";

/** What every later middleware and handler knows about the request in flight. */
export interface RequestContext {
  readonly requestId: string;
  /** Carries the request id into every line this request logs. */
  readonly logger: Logger;
  /** Aborted when the client disconnects before the response is complete. */
  readonly signal: AbortSignal;
  readonly startedAt: number;
  /** The backend chosen for this request, once routed. */
  backend: string | undefined;
  /** Whether the answer is a stream of server-sent events. */
  stream: boolean;
  /**
   * The status a stream that broke after its 200 went out would have had (502, 504): what logs and
   * metrics record, since the client could only be told in-band.
   */
  failedStatus: number | undefined;
  /** Gateways the request passed through before this one (`x-gateway-hops`), once the loop guard read it. */
  hops: number;
  /** The name of the gateway API key the request carried, once authenticated (auth on only). */
  key: string | undefined;
  /** The backends that key may use; undefined = all. */
  allowedBackends: ReadonlySet<string> | undefined;
  /** Tokens the answer used (prompt + completion), once known: what the key's tokens per minute are charged. */
  tokensUsed: number;
}

/** The status to log and count: a broken stream's real outcome, 499 if the client left, else what was sent. */
export function outcomeStatus(res: Response, context: RequestContext): number {
  return context.failedStatus ?? (res.writableFinished ? res.statusCode : 499);
}

/**
 * The context rides on the response object itself, under a symbol no one else uses: a WeakMap keyed by
 * response did the same at a measurable cost per request (an ephemeron entry for the GC to trace and drop).
 */
const CONTEXT = Symbol("gateway.requestContext");
type WithContext = Response & { [CONTEXT]?: RequestContext };

export function contextOf(res: Response): RequestContext {
  const context = (res as WithContext)[CONTEXT];
  if (context === undefined) throw new Error("requestContext middleware is not installed");
  return context;
}

/** A class rather than an object literal, so every request's context has one shape and one lazy getter. */
class Context implements RequestContext {
  readonly startedAt = performance.now();
  backend: string | undefined = undefined;
  stream = false;
  failedStatus: number | undefined = undefined;
  hops = 0;
  key: string | undefined = undefined;
  allowedBackends: ReadonlySet<string> | undefined = undefined;
  tokensUsed = 0;
  private child: Logger | undefined = undefined;

  constructor(
    readonly requestId: string,
    readonly signal: AbortSignal,
    private readonly base: Logger,
  ) {}

  /** Made on first use: most requests log nothing but their access line, which does not need it. */
  get logger(): Logger {
    this.child ??= this.base.child({ requestId: this.requestId });
    return this.child;
  }
}

/**
 * Gives every request an id (the client's `x-request-id` when it is safe, else a new UUID), echoes it on
 * the response before anything else can fail, and ties an AbortSignal to the client's connection.
 */
export function requestContext(logger: Logger) {
  return (req: Request, res: Response, next: NextFunction): void => {
    const requestId = requestIdFrom(req.get("x-request-id"));
    res.setHeader("x-request-id", requestId);
    const controller = new AbortController();
    res.on("close", () => {
      if (!res.writableFinished) controller.abort();
    });
    (res as WithContext)[CONTEXT] = new Context(requestId, controller.signal, logger);
    next();
  };
}

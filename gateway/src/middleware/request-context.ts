import type { NextFunction, Request, Response } from "express";
import type { Logger } from "winston";
import type { Usage } from "../schemas/chat";
import type { Endpoint } from "../observability/metrics";
import { requestIdFrom } from "../utils/request-id";

/** A key limited to some backends: its name (for the refusal) and the backends it may be routed to. */
export interface KeyAllowlist {
  readonly key: string;
  readonly backends: ReadonlySet<string>;
}

/**
 * What every later middleware and handler knows about the request in flight. It is also what the inference
 * service is handed as the request's CallOptions (services/inference.ts): no second per-request object.
 */
export interface RequestContext {
  readonly requestId: string;
  /** Carries the request id into every line this request logs. */
  readonly logger: Logger;
  /** Aborted when the client disconnects before the response is complete. */
  readonly signal: AbortSignal;
  readonly startedAt: number;
  /** The backend chosen for this request, once routed. */
  backend: string | undefined;
  /** The backend's target (upstream) the last call went to: the one that answered, if one did. */
  target: string | undefined;
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
  /** Set when that key may use only some backends; undefined = all. */
  allowlist: KeyAllowlist | undefined;
  /** Tokens the answer used (prompt + completion), once known: what the key's tokens per minute are charged. */
  tokensUsed: number;
  /** Counted in the request metrics (the inference routes only, see request-metrics.ts). */
  metered: boolean;
  /** Which inference API the request called, for the metrics' `endpoint` label. */
  endpoint: Endpoint;
  /** Each backend the request turns to (the routed one, then any fallback): the last is the one that answered. */
  onBackend(name: string): void;
  onTarget(name: string): void;
  /** One of the request's headers (lower-case name), for a backend's session affinity. */
  header(name: string): string | undefined;
  /** The request passed every check and a streamed answer is about to be asked for. */
  onStream(): void;
  onUsage(usage: Usage): void;
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

/**
 * A class, not an object literal: a literal with a `get logger()` kept every request's object graph alive
 * through young-generation GCs (bench/README.md, "What each change bought").
 */
class Context implements RequestContext {
  readonly startedAt = performance.now();
  backend: string | undefined = undefined;
  target: string | undefined = undefined;
  stream = false;
  failedStatus: number | undefined = undefined;
  hops = 0;
  key: string | undefined = undefined;
  allowlist: KeyAllowlist | undefined = undefined;
  tokensUsed = 0;
  metered = false;
  endpoint: Endpoint = "chat";
  private child: Logger | undefined = undefined;

  constructor(
    readonly requestId: string,
    readonly signal: AbortSignal,
    private readonly base: Logger,
    private readonly res: Response,
  ) {}

  /** Made on first use: most requests log nothing but their access line, which does not need it. */
  get logger(): Logger {
    this.child ??= this.base.child({ requestId: this.requestId });
    return this.child;
  }

  /** So the access log, the metrics and `x-gateway-backend` name the backend whose answer was sent. */
  onBackend(name: string): void {
    this.backend = name;
    this.res.setHeader("x-gateway-backend", name);
  }

  onTarget(name: string): void {
    this.target = name;
  }

  header(name: string): string | undefined {
    return this.res.req.get(name);
  }

  onStream(): void {
    this.stream = true;
  }

  onUsage(usage: Usage): void {
    this.tokensUsed = usage.total_tokens;
  }
}

/** What runs once a request is over (its response closed), with its context: the access line, the metrics. */
export type RequestEnd = (req: Request, res: Response, context: RequestContext) => void;

/**
 * Gives every request an id (the client's `x-request-id` when it is safe, else a new UUID), echoes it on
 * the response before anything else can fail, and ties an AbortSignal to the client's connection. Its one
 * `close` listener also runs `ended`: a listener (and a closure) per concern per request was measurable.
 */
export function requestContext(logger: Logger, ended: RequestEnd) {
  return (req: Request, res: Response, next: NextFunction): void => {
    const requestId = requestIdFrom(req.get("x-request-id"));
    res.setHeader("x-request-id", requestId);
    const controller = new AbortController();
    const context = new Context(requestId, controller.signal, logger, res);
    res.on("close", () => {
      if (!res.writableFinished) controller.abort();
      ended(req, res, context);
    });
    (res as WithContext)[CONTEXT] = context;
    next();
  };
}

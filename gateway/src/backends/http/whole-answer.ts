import type { IncomingHttpHeaders } from "node:http";
import { type Dispatcher, type Pool, errors as undiciErrors } from "undici";
import { ResponseBudgetExhaustedError, UpstreamInvalidResponseError } from "../../errors";
import type { ResponseBudget } from "../response-budget";

/** An upstream answer read to its end: what a non-streamed call needs. */
export interface WholeAnswer {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly text: string;
}

/**
 * One exchange read whole through undici's lowest-level `dispatch`, not `Pool.request`: the body stream
 * `request` hands back kept each call's objects alive through young-generation GCs (bench/README.md).
 * Rejects with undici's own errors (or `RequestAbortedError` once `signal` aborts), as `request` would.
 */
export function readWhole(
  pool: Pool,
  options: Dispatcher.DispatchOptions,
  signal: AbortSignal,
  allowance: AnswerAllowance,
): Promise<WholeAnswer> {
  return new Promise((resolve, reject) => {
    const handler = new WholeAnswerHandler(signal, allowance, resolve, reject);
    try {
      pool.dispatch(options, handler);
    } catch (error) {
      handler.onResponseError(undefined, error instanceof Error ? error : new Error(String(error)));
    }
  });
}

export class WholeAnswerHandler implements Dispatcher.DispatchHandler {
  private status = 0;
  private headers: IncomingHttpHeaders = {};
  private readonly body: WholeBody;
  private controller: Dispatcher.DispatchController | undefined;
  private settled = false;

  constructor(
    private readonly signal: AbortSignal,
    allowance: AnswerAllowance,
    private readonly resolve: (answer: WholeAnswer) => void,
    private readonly reject: (error: Error) => void,
  ) {
    this.body = new WholeBody(allowance);
    signal.addEventListener("abort", this.onAbort, { once: true });
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    // Aborted while the request waited in the pool's queue: it must not go out at all.
    if (this.signal.aborted) this.onAbort();
  }

  onResponseStart(_controller: Dispatcher.DispatchController, status: number, headers: IncomingHttpHeaders): void {
    this.status = status;
    this.headers = headers;
    this.bounded(() => this.body.expect(headers));
  }

  onResponseData(_controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.settled) return;
    this.bounded(() => this.body.add(chunk));
  }

  onResponseEnd(): void {
    if (this.settled) return;
    const text = this.body.text();
    this.settle();
    this.resolve({ status: this.status, headers: this.headers, text });
  }

  onResponseError(_controller: Dispatcher.DispatchController | undefined, error: Error): void {
    if (this.settle()) this.reject(error);
  }

  /** True the first time: the one answer this exchange gives, after which the abort listener and the allowance are gone. */
  private settle(): boolean {
    if (this.settled) return false;
    this.settled = true;
    this.signal.removeEventListener("abort", this.onAbort);
    this.body.release();
    return true;
  }

  /** Runs a claim on the body's bounds; past them the exchange is stopped with that error. */
  private bounded(claim: () => void): void {
    try {
      claim();
    } catch (error) {
      const reason = error instanceof Error ? error : new Error(String(error));
      if (this.settle()) {
        this.controller?.abort(reason);
        this.reject(reason);
      }
    }
  }

  private readonly onAbort = (): void => {
    // Not yet handed to a connection: undici calls onRequestStart later, which aborts it then.
    this.controller?.abort(new undiciErrors.RequestAbortedError());
  };
}

/**
 * An answer's body gathered whole within its AnswerAllowance: what both a plain call (WholeAnswerHandler) and a
 * stream request answered with an error or without SSE (StreamExchange) read. Each claim throws past the bounds.
 */
export class WholeBody {
  private readonly chunks: Buffer[] = [];
  private received = 0;

  constructor(private readonly allowance: AnswerAllowance) {}

  /** A declared length is claimed up front: an answer that cannot fit fails before any of it is read. */
  expect(headers: IncomingHttpHeaders): void {
    const declared = Number(headers["content-length"]);
    if (Number.isSafeInteger(declared) && declared > 0) this.allowance.need(declared);
  }

  add(chunk: Buffer): void {
    this.received += chunk.length;
    this.allowance.need(this.received);
    this.chunks.push(chunk);
  }

  /** The text, decoded before the allowance is released (the copy counts while it is made). */
  text(): string {
    const text = utf8Text(this.chunks);
    this.chunks.length = 0;
    return text;
  }

  /** Gives back exactly what was reserved, however the answer ended. */
  release(): void {
    this.allowance.release();
  }
}

/**
 * One answer's hold on the bounds for answers read whole: its size against `max_response_bytes`, its bytes
 * against the budget all backends share. `release` gives back exactly what was reserved, however the call ends.
 */
export class AnswerAllowance {
  private reserved = 0;

  constructor(
    private readonly budget: ResponseBudget,
    private readonly maxBytes: number,
    private readonly backend: string,
  ) {}

  /** Reserves up to `bytes` for the answer in total; throws if that is past either bound. */
  need(bytes: number): void {
    if (bytes > this.maxBytes)
      throw new UpstreamInvalidResponseError(this.backend, `the answer is larger than ${this.maxBytes} bytes`);
    if (bytes <= this.reserved) return;
    if (!this.budget.tryReserve(bytes - this.reserved)) throw new ResponseBudgetExhaustedError(this.budget.limitBytes);
    this.reserved = bytes;
  }

  release(): void {
    this.budget.release(this.reserved);
    this.reserved = 0;
  }
}

/** As undici's body.text() does: UTF-8, a byte-order mark dropped. */
export function utf8Text(chunks: readonly Buffer[]): string {
  const text = Buffer.concat(chunks).toString("utf8");
  return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
}

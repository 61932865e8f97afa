import type { IncomingHttpHeaders } from "node:http";
import { type Dispatcher, type Pool, errors as undiciErrors } from "undici";
import { type ServerSentEvent, SseParser } from "../../utils/sse";
import { type AnswerAllowance, utf8Text } from "./whole-answer";

/** Events parsed and not yet taken past this many bytes of input: stop reading until the relay catches up. */
const HIGH_WATER_BYTES = 64 * 1024;
/** After `[DONE]`, what an upstream may still send before its answer ends: the rest is cut, with the connection. */
const DRAIN_BYTES = 64 * 1024;
const DRAIN_MS = 1000;

/**
 * One streamed exchange through undici's lowest-level `dispatch`, not `Pool.request`: each upstream read
 * is parsed where undici hands it over (SseParser, synchronous) and the events it completes wait in a queue
 * for `next()`. No body stream, no async iterator under the relay: per read, one promise instead of the
 * stream machinery's several (and their garbage), which made the relay cost 1.5x a bare pipe proxy per chunk.
 *
 * A 2xx `text/event-stream` answer is read as events; any other answer (an error, or a server that
 * ignored `stream: true`) is read whole within an AnswerAllowance, for `text()`. Rejects with undici's own
 * errors, or `RequestAbortedError` once `signal` aborts, or SseParser's EventTooLargeError.
 */
export class StreamExchange implements Dispatcher.DispatchHandler {
  status = 0;
  headers: IncomingHttpHeaders = {};
  /** The answer is server-sent events (2xx `text/event-stream`): read with next(); otherwise with text(). */
  isEventStream = false;
  private controller: Dispatcher.DispatchController | undefined;
  private mode: "head" | "events" | "whole" | "draining" = "head";
  private readonly parser: SseParser;
  private queue: ServerSentEvent[] = [];
  private queuedBytes = 0;
  private ended = false;
  private failure: Error | undefined;
  /** Whoever awaits the next change (head, next or text). */
  private waiter: (() => void) | undefined;
  private allowance: AnswerAllowance | undefined;
  private chunks: Buffer[] = [];
  private received = 0;
  private wholeText = "";
  private drainTimer: NodeJS.Timeout | undefined;

  private constructor(
    private readonly signal: AbortSignal,
    maxEventBytes: number,
    private readonly newAllowance: () => AnswerAllowance,
  ) {
    this.parser = new SseParser(maxEventBytes);
    signal.addEventListener("abort", this.onAbort, { once: true });
  }

  /** Sends the request; await `head()` for the status and headers. */
  static open(
    pool: Pool,
    options: Dispatcher.DispatchOptions,
    signal: AbortSignal,
    maxEventBytes: number,
    newAllowance: () => AnswerAllowance,
  ): StreamExchange {
    const exchange = new StreamExchange(signal, maxEventBytes, newAllowance);
    try {
      pool.dispatch(options, exchange);
    } catch (error) {
      exchange.onResponseError(undefined, error instanceof Error ? error : new Error(String(error)));
    }
    return exchange;
  }

  /** Resolves once the status and headers are in. */
  async head(): Promise<void> {
    while (this.mode === "head") {
      if (this.failure !== undefined) throw this.failure;
      await this.change();
    }
  }

  /** The next events, as many as have arrived (at least one); undefined once the answer ended. */
  async next(): Promise<ServerSentEvent[] | undefined> {
    // Each turn waits for the handler to report something new: data, the end or a failure.
    for (;;) {
      if (this.queue.length > 0) {
        const events = this.queue;
        this.queue = [];
        this.queuedBytes = 0;
        if (this.controller?.paused === true) this.controller.resume();
        return events;
      }
      if (this.failure !== undefined) throw this.failure;
      if (this.ended) return undefined;
      await this.change();
    }
  }

  /** A whole answer's text (UTF-8, a byte-order mark dropped), within its allowance. */
  async text(): Promise<string> {
    while (!this.ended && this.failure === undefined) await this.change();
    if (this.failure !== undefined) throw this.failure;
    return this.wholeText;
  }

  /**
   * The relay is done with the events (`[DONE]` came): the rest of the answer, normally just the end of
   * its body, is read and dropped so the connection goes back to the pool instead of being cut. An upstream
   * that keeps sending, or does not end, loses the connection after DRAIN_BYTES or DRAIN_MS.
   */
  finish(): void {
    if (this.ended || this.failure !== undefined) return;
    this.mode = "draining";
    this.queue = [];
    if (this.controller?.paused === true) this.controller.resume();
    this.received = 0;
    this.drainTimer = setTimeout(() => this.abort(), DRAIN_MS);
    this.drainTimer.unref();
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    // Failed or aborted while the request waited in the pool's queue: it must not go out at all.
    if (this.failure !== undefined) controller.abort(this.failure);
    else if (this.signal.aborted) this.abort();
  }

  onResponseStart(_controller: Dispatcher.DispatchController, status: number, headers: IncomingHttpHeaders): void {
    this.status = status;
    this.headers = headers;
    const type = headers["content-type"];
    this.isEventStream =
      status >= 200 && status <= 299 && typeof type === "string" && type.includes("text/event-stream");
    this.mode = this.isEventStream ? "events" : "whole";
    if (!this.isEventStream) {
      this.allowance = this.newAllowance();
      // A declared length is claimed up front: an answer that cannot fit fails before any of it is read.
      const declared = Number(headers["content-length"]);
      if (Number.isSafeInteger(declared) && declared > 0) this.claim(declared);
    }
    this.wake();
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.failure !== undefined) return;
    if (this.mode === "events") {
      const before = this.queue.length;
      try {
        this.parser.push(chunk, this.queue);
      } catch (error) {
        this.fail(error instanceof Error ? error : new Error(String(error)));
        return;
      }
      this.queuedBytes += chunk.length;
      if (this.queue.length > before) {
        // Only events waiting to be taken pause the reading: a partial event needs more bytes to complete
        // (SseParser bounds it by max_event_bytes).
        if (this.queuedBytes > HIGH_WATER_BYTES && !controller.paused) controller.pause();
        this.wake();
      }
    } else if (this.mode === "whole") {
      this.received += chunk.length;
      if (this.claim(this.received)) this.chunks.push(chunk);
    } else if (this.mode === "draining") {
      this.received += chunk.length;
      if (this.received > DRAIN_BYTES) this.abort();
    }
  }

  onResponseEnd(): void {
    if (this.failure !== undefined) return;
    if (this.mode === "whole") {
      // Decoded before the allowance is released: the copy counts while it is made.
      this.wholeText = utf8Text(this.chunks);
      this.chunks = [];
    }
    this.ended = true;
    this.release();
    this.wake();
  }

  onResponseError(_controller: Dispatcher.DispatchController | undefined, error: Error): void {
    if (this.ended || this.failure !== undefined) return;
    this.failure = error;
    this.release();
    this.wake();
  }

  /** Stops the exchange now (the client left, or the relay gave up on it). */
  abort(): void {
    this.fail(new undiciErrors.RequestAbortedError());
  }

  private fail(error: Error): void {
    if (this.ended || this.failure !== undefined) return;
    this.failure = error;
    // Not yet handed to a connection: onRequestStart aborts it when undici gets to it.
    this.controller?.abort(error);
    this.release();
    this.wake();
  }

  /** Claims `bytes` for a whole answer; past its bounds the exchange fails with that error (and false). */
  private claim(bytes: number): boolean {
    try {
      this.allowance?.need(bytes);
      return true;
    } catch (error) {
      this.fail(error instanceof Error ? error : new Error(String(error)));
      return false;
    }
  }

  private release(): void {
    this.signal.removeEventListener("abort", this.onAbort);
    this.allowance?.release();
    if (this.drainTimer !== undefined) clearTimeout(this.drainTimer);
  }

  private change(): Promise<void> {
    return new Promise((resolve) => {
      this.waiter = resolve;
    });
  }

  private wake(): void {
    const waiter = this.waiter;
    if (waiter === undefined) return;
    this.waiter = undefined;
    waiter();
  }

  private readonly onAbort = (): void => {
    this.abort();
  };
}

import type { IncomingHttpHeaders } from "node:http";
import { type Dispatcher, type Pool, errors as undiciErrors } from "undici";
import { type ServerSentEvent, type SseHandler, SseParser } from "../../utils/sse";
import { type AnswerAllowance, WholeBody } from "./whole-answer";

/** After `[DONE]`, what an upstream may still send before its answer ends: the rest is cut, with the connection. */
const DRAIN_BYTES = 64 * 1024;
const DRAIN_MS = 1000;

/** Where a StreamExchange hands its events (see relay). */
export interface EventSink {
  /** One event; false to pause reading until the exchange's `resume()`. */
  event(event: ServerSentEvent): boolean;
  end(): void;
  fail(error: Error): void;
}

/**
 * One streamed exchange through undici's lowest-level `dispatch`, not `Pool.request`: each upstream read
 * is parsed where undici hands it over (SseParser, synchronous) and the events it completes go straight to
 * the sink given to `relay()`, in the same call. No body stream, no async iterator, no promise per event.
 *
 * A 2xx `text/event-stream` answer is read as events; any other answer (an error, or a server that
 * ignored `stream: true`) is read whole within an AnswerAllowance, for `text()`. Fails with undici's own
 * errors, or `RequestAbortedError` once `signal` aborts, or SseParser's EventTooLargeError.
 */
export class StreamExchange implements Dispatcher.DispatchHandler, SseHandler {
  status = 0;
  headers: IncomingHttpHeaders = {};
  /** The answer is server-sent events (2xx `text/event-stream`): read with relay(); otherwise with text(). */
  isEventStream = false;
  private controller: Dispatcher.DispatchController | undefined;
  private mode: "head" | "events" | "whole" | "draining" = "head";
  private readonly parser: SseParser;
  /** Events parsed before relay() gave a sink (the head and the first events often come in one read). */
  private early: ServerSentEvent[] = [];
  /** Whether the sink took every event of the read in progress (false: pause the reading). */
  private more = true;
  private sink: EventSink | undefined;
  private ended = false;
  private failure: Error | undefined;
  /** Whoever awaits the next change (head or text). */
  private waiter: (() => void) | undefined;
  /** The body of an answer read whole (not events). */
  private body: WholeBody | undefined;
  /** Bytes that came after `[DONE]`. */
  private drained = 0;
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

  /**
   * Hands every event, from now on and any that came early, to `sink`, synchronously as the reads arrive;
   * then the end or the failure, once. When `sink.event` returns false, reading pauses until `resume()`.
   */
  relay(sink: EventSink): void {
    this.sink = sink;
    const early = this.early;
    this.early = [];
    for (const event of early) {
      // None after the sink finished the exchange (`[DONE]`); those before a failure still count.
      if (this.sink !== sink) break;
      this.deliver(event);
    }
    if (this.sink !== sink) return;
    if (this.failure !== undefined) sink.fail(this.failure);
    else if (this.ended) sink.end();
  }

  /** The sink caught up: read again. */
  resume(): void {
    if (this.controller?.paused === true) this.controller.resume();
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
    // The sink hears nothing more, even of an answer that has ended already (a short one often has, by the
    // time its relay starts): telling it the body ended without `[DONE]` would make an error to discard.
    this.sink = undefined;
    if (this.ended || this.failure !== undefined) return;
    this.mode = "draining";
    this.resume();
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
      const body = new WholeBody(this.newAllowance());
      this.body = body;
      this.bounded(() => body.expect(headers));
    }
    this.wake();
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.failure !== undefined) return;
    if (this.mode === "events") {
      this.more = true;
      try {
        this.parser.push(chunk, this);
      } catch (error) {
        this.fail(error instanceof Error ? error : new Error(String(error)));
        return;
      }
      // Only events the sink could not take pause the reading: a partial event needs more bytes to complete
      // (SseParser bounds it by max_event_bytes).
      if (!this.more && !controller.paused) controller.pause();
    } else if (this.mode === "whole") {
      const body = this.body;
      if (body !== undefined) this.bounded(() => body.add(chunk));
    } else if (this.mode === "draining") {
      this.drained += chunk.length;
      if (this.drained > DRAIN_BYTES) this.abort();
    }
  }

  onResponseEnd(): void {
    if (this.failure !== undefined) return;
    if (this.body !== undefined) this.wholeText = this.body.text();
    this.ended = true;
    this.release();
    this.wake();
    this.sink?.end();
  }

  onResponseError(_controller: Dispatcher.DispatchController | undefined, error: Error): void {
    if (this.ended || this.failure !== undefined) return;
    this.failure = error;
    this.release();
    this.wake();
    this.sink?.fail(error);
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
    this.sink?.fail(error);
  }

  /** One event to the sink, or kept for it; false when the sink wants no more for now. */
  private deliver(event: ServerSentEvent): boolean {
    if (this.sink === undefined) {
      this.early.push(event);
      return true;
    }
    return this.sink.event(event);
  }

  /** Runs a claim on a whole answer's bounds; past them the exchange fails with that error. */
  private bounded(claim: () => void): void {
    try {
      claim();
    } catch (error) {
      this.fail(error instanceof Error ? error : new Error(String(error)));
    }
  }

  private release(): void {
    this.signal.removeEventListener("abort", this.onAbort);
    this.body?.release();
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

  /** Each event of a read, as SseParser finds it. */
  onEvent(event: ServerSentEvent): void {
    // The sink may have finished with the stream ([DONE]) or failed it on an earlier event of this read.
    if (this.mode !== "events" || this.failure !== undefined) return;
    if (!this.deliver(event)) this.more = false;
  }

  private readonly onAbort = (): void => {
    this.abort();
  };
}

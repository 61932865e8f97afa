import type { EventEmitter } from "node:events";
import type { Socket } from "node:net";
import type { Response } from "express";
import { ClientClosedError, type GatewayError, InternalError } from "../../errors";
import { errorBody, toGatewayError } from "../../middleware/error-handler";
import type { RequestContext } from "../../middleware/request-context";
import type { ResponseEvent } from "../../schemas/responses";
import type { StreamChunk } from "../../services/chunk-relay";
import type { PullListener, PullStream } from "../../utils/pull-stream";

/** How one endpoint's stream is written: each item's event, the in-band error, the last words. */
export interface EventLines<T> {
  line(item: T): string;
  /** The item's event as one HTTP/1.1 chunk frame: its size in hex, CRLF, the event, CRLF. */
  frame(item: T): string;
  /** The event that reports a failure after the 200 went out, from the error's OpenAI body. */
  failure(error: ReturnType<typeof errorBody>): string;
  /** Written at the end, however the stream ended. */
  readonly end: string;
}

/**
 * Sends a stream's items as server-sent events, each flushed as it is made, and always ends with `lines.end`
 * (chat and text completions: `data: [DONE]`). A failure after the 200 went out cannot change the status,
 * so it is sent in-band (`lines.failure`: an `{"error": …}` event, or the Responses API's `error` event)
 * before the end: OpenAI's SDK raises on that, where a stream that just stopped would pass as success.
 *
 * Driven by the stream's listener, not by awaiting it: each arrival runs `pump` from the producer's own call
 * (for the http backend, undici's data callback), which writes every chunk there is. No promise per chunk:
 * at thousands of open streams, the promises a `for await` leaves waiting between chunks were most of the
 * relay's garbage. Returns once the headers are out: nothing waits on the stream (a handler awaiting it kept
 * Express's routing closures alive for the stream's whole life, about a kilobyte per open stream).
 */
export function sendEventStream<T>(
  res: Response,
  chunks: PullStream<T>,
  context: RequestContext,
  lines: EventLines<T>,
): void {
  res.status(200).set({
    "content-type": "text/event-stream; charset=utf-8",
    "cache-control": "no-cache",
    "x-accel-buffering": "no",
  });
  // Routing is over: Express's `req.next` holds every routing closure of the request, which a stream would
  // keep alive for its whole life (about 1.3 KB per open stream).
  res.req.next = undefined;
  const writer = new EventWriter(res, chunks, context, lines);
  res.once("close", writer.unblock);
  chunks.listen(writer);
  writer.pump();
  // The head goes out now even when no event made a chunk yet: the client learns the stream started.
  if (!res.headersSent) res.flushHeaders();
}

/** Past this, a turn's frames are written without waiting for the turn's end: the socket's high-water mark. */
const MAX_BATCH_CHARS = 16 * 1024;

/**
 * One stream's writing: its state and its listeners in one object (each chunk touches it, and one object is
 * one cache miss at thousands of open streams, where a closure's context and a writer were two).
 *
 * The first event goes through `res.write`, which sends the response's head with it (one write for both,
 * where flushing the head first cost a syscall of its own per stream). After it, on an HTTP/1.1 connection,
 * where the response is chunked, each event goes to the socket as its own chunk frame: Node's `res.write`
 * sends a chunk as four writes (size, CRLF, data, CRLF) gathered by a cork and a `nextTick` per call into one
 * `writev` (5% of the CPU per relayed chunk at 1000 open streams: bench/README.md). The frames of one turn (the
 * events of one upstream read) are joined and go out in one write (`flush`), and those of the last turn with
 * the response's end (`closing`): a stream's finish, usage and `[DONE]` events, which arrive together, were
 * three writes. The frames are the same bytes; `res.end()` still writes the last one and the terminating
 * chunk. Any other case (HTTP/1.0, a pipelined answer with no socket yet at its first event) keeps writing
 * through `res.write`.
 */
class EventWriter<T> implements PullListener {
  private socket: Socket | undefined;
  /** The frames of this turn's events, not yet written. */
  private batch = "";
  private over = false;
  /** Waiting for the socket to drain: a slow reader must not make us buffer. */
  private blocked = false;
  private pumping = false;
  private again = false;

  constructor(
    private readonly res: Response,
    private readonly chunks: PullStream<T>,
    private readonly context: RequestContext,
    private readonly lines: EventLines<T>,
  ) {}

  /** Each arrival, from the producer's own call. */
  arrived(): void {
    this.pump();
  }

  /** Writes every chunk there is. */
  pump(): void {
    if (this.over || this.blocked) return;
    // A call made while pumping (a write that woke the producer) becomes one more turn of this one.
    if (this.pumping) {
      this.again = true;
      return;
    }
    this.pumping = true;
    const { chunks, res } = this;
    try {
      do {
        this.again = false;
        // Each turn adds one chunk taken to the batch; the run ends when none is left.
        for (;;) {
          const chunk = chunks.take();
          if (chunk === undefined || res.destroyed) break;
          if (!this.event(chunk)) {
            this.block();
            return;
          }
        }
        // Ended, or the client left (`finish` then releases the backend).
        if (chunks.ended || res.destroyed) {
          this.finish();
          return;
        }
        if (!this.flush()) {
          this.block();
          return;
        }
      } while (this.again);
    } catch (error) {
      this.finish(error);
    } finally {
      this.pumping = false;
    }
  }

  /**
   * The socket drained, or the client left (while the stream waits for its next event or for the socket to
   * drain: it finishes now, not at the next event). The response's "close" and the socket's "drain" listener.
   */
  readonly unblock = (): void => {
    this.blocked = false;
    this.pump();
  };

  private block(): void {
    this.blocked = true;
    this.drained.once("drain", this.unblock);
  }

  private finish(failure?: unknown): void {
    const { res, chunks } = this;
    this.over = true;
    chunks.listen(undefined);
    this.drained.off("drain", this.unblock);
    res.off("close", this.unblock);
    // The turn's events first, and with them the end below in one write.
    this.closing();
    if (failure !== undefined) sendFailure(res, failure, this.context, this.lines);
    // Whatever ended the writing, the backend is released (a no-op once the stream is over).
    chunks.close();
    if (!res.destroyed) res.end(this.lines.end);
  }

  /** Adds one item's event to the turn's writes; false: wait for `drained`'s "drain" before the next. */
  private event(item: T): boolean {
    if (this.socket !== undefined) {
      this.batch += this.lines.frame(item);
      // A flood (an upstream that sends faster than the client reads) is written as it grows, so the
      // socket's backpressure still stops the turn.
      return this.batch.length < MAX_BATCH_CHARS || this.flush();
    }
    const res = this.res;
    const first = !res.headersSent;
    const written = res.write(this.lines.line(item));
    // The head is out now, and with it whether the body is chunked. No socket: a pipelined request's answer
    // waits its turn, its bytes queued by Node until then.
    if (first && res.chunkedEncoding && res.socket !== null && res.socket.writable) this.socket = res.socket;
    return written;
  }

  /** Writes the turn's events; false: wait for `drained`'s "drain" before the next. */
  private flush(): boolean {
    const batch = this.batch;
    if (batch === "" || this.socket === undefined) return true;
    this.batch = "";
    return this.socket.write(batch);
  }

  /**
   * The response is about to end: the turn's events are written to the socket corked, and `res.end()`, which
   * uncorks it fully, sends them with the last event and the terminating chunk in one write.
   */
  private closing(): void {
    if (this.res.destroyed) this.batch = "";
    if (this.batch === "") return;
    this.socket?.cork();
    this.flush();
  }

  /** What says "drain" once a write that returned false is out (the same emitter from the first write on). */
  private get drained(): EventEmitter {
    return this.socket ?? this.res;
  }
}

/**
 * A chunk's `data:` line, the same bytes as `data: ${JSON.stringify(chunk)}`. Every chunk of a stream shares
 * its id, object, created, model and backend: they are serialised once per stream, and each chunk adds only
 * its choices (and usage), in the key order ChunkRelay makes them in.
 */
export class ChunkLines implements EventLines<StreamChunk> {
  readonly end = "data: [DONE]\n\n";
  private id: string | undefined;
  private head = "";
  /** The head's length in UTF-8 bytes (a model name may be any text). */
  private headBytes = 0;

  line(chunk: StreamChunk): string {
    const head = this.headOf(chunk);
    return `${head}${JSON.stringify(chunk.choices)}${usageField(chunk)}}\n\n`;
  }

  /**
   * The line as a chunk frame, its size added up from its parts: the frame is one string flattened once, by
   * the socket's write (measuring the joined line first flattened it a second time: a copy per chunk).
   */
  frame(chunk: StreamChunk): string {
    const head = this.headOf(chunk);
    const choices = JSON.stringify(chunk.choices);
    const usage = usageField(chunk);
    const bytes = this.headBytes + Buffer.byteLength(choices) + (usage === "" ? 0 : Buffer.byteLength(usage)) + 3;
    return `${bytes.toString(16)}\r\n${head}${choices}${usage}}\n\n\r\n`;
  }

  /** The fields every chunk of the stream shares, serialised once: `data: {"id":…,"choices":`. */
  private headOf(chunk: StreamChunk): string {
    if (chunk.id !== this.id) {
      this.id = chunk.id;
      const { id, object, created, model, backend } = chunk;
      this.head = `data: ${JSON.stringify({ id, object, created, model, backend }).slice(0, -1)},"choices":`;
      this.headBytes = Buffer.byteLength(this.head);
    }
    return this.head;
  }

  failure(error: ReturnType<typeof errorBody>): string {
    return `data: ${JSON.stringify(error)}\n\n`;
  }
}

/**
 * A Responses API stream's lines: each event under its own `event:` name, no `[DONE]`. A failure is the
 * API's `error` event (flat: code, message, param), numbered after the last event relayed, which the
 * official SDK raises as an APIError.
 */
export class ResponseEventLines implements EventLines<ResponseEvent> {
  readonly end = "";
  private sequence = -1;

  line(event: ResponseEvent): string {
    if (typeof event.sequence_number === "number") this.sequence = event.sequence_number;
    return `event: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`;
  }

  frame(event: ResponseEvent): string {
    const text = this.line(event);
    return `${Buffer.byteLength(text).toString(16)}\r\n${text}\r\n`;
  }

  failure({ error }: ReturnType<typeof errorBody>): string {
    const { code, message, param } = error;
    const event = { type: "error", code, message, param, sequence_number: this.sequence + 1 };
    return `event: error\ndata: ${JSON.stringify(event)}\n\n`;
  }
}

/** A chunk's `usage` field with its leading comma, or nothing when the chunk has none. */
function usageField(chunk: StreamChunk): string {
  return chunk.usage === undefined ? "" : `,"usage":${JSON.stringify(chunk.usage)}`;
}

function sendFailure<T>(res: Response, error: unknown, context: RequestContext, lines: EventLines<T>): void {
  const failure: GatewayError = toGatewayError(error) ?? new InternalError();
  if (failure instanceof ClientClosedError || res.destroyed) return;
  if (failure instanceof InternalError)
    context.logger.error("stream failed", {
      error: error instanceof Error ? (error.stack ?? error.message) : String(error),
    });
  else context.logger.warn("stream interrupted", { code: failure.code, error: failure.message });
  context.failedStatus = failure.status;
  res.write(lines.failure(errorBody(failure)));
}

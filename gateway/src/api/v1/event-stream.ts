import type { Response } from "express";
import { ClientClosedError, type GatewayError, InternalError } from "../../errors";
import { errorBody, toGatewayError } from "../../middleware/error-handler";
import type { RequestContext } from "../../middleware/request-context";
import type { ChatCompletionChunk } from "../../schemas/chat";
import type { PullStream } from "../../utils/pull-stream";

/**
 * Sends chunks as server-sent events, each flushed as it is made, and always ends with `data: [DONE]`.
 * A failure after the 200 went out cannot change the status, so it is sent in-band as an `{"error": …}`
 * event before `[DONE]`: OpenAI's SDK raises on that, where a stream that just stopped would pass as success.
 *
 * Driven by the stream's listener, not by awaiting it: each arrival runs `pump` from the producer's own call
 * (for the http backend, undici's data callback), which writes every chunk there is. No promise per chunk:
 * at thousands of open streams, the promises a `for await` leaves waiting between chunks were most of the
 * relay's garbage. Returns once the headers are out: nothing waits on the stream (a handler awaiting it kept
 * Express's routing closures alive for the stream's whole life, about a kilobyte per open stream).
 */
export function sendEventStream(res: Response, chunks: PullStream<ChatCompletionChunk>, context: RequestContext): void {
  res.status(200).set({
    "content-type": "text/event-stream; charset=utf-8",
    "cache-control": "no-cache",
    "x-accel-buffering": "no",
  });
  res.flushHeaders();
  let over = false;
  /** Waiting for the socket to drain: a slow reader must not make us buffer. */
  let blocked = false;
  let pumping = false;
  let again = false;
  const lines = new ChunkLines();
  const finish = (failure?: unknown) => {
    over = true;
    chunks.listen(undefined);
    res.off("drain", onDrain);
    res.off("close", onClose);
    if (failure !== undefined) sendFailure(res, failure, context);
    // Whatever ended the writing, the backend is released (a no-op once the stream is over).
    chunks.close();
    if (!res.destroyed) res.end("data: [DONE]\n\n");
  };
  const onDrain = () => {
    blocked = false;
    pump();
  };
  // A client that leaves, while the stream waits for its next event or for the socket to drain: finish
  // now, not at the next event.
  const onClose = () => {
    blocked = false;
    pump();
  };
  function pump(): void {
    if (over || blocked) return;
    // A call made while pumping (a write that woke the producer) becomes one more turn of this one.
    if (pumping) {
      again = true;
      return;
    }
    pumping = true;
    try {
      do {
        again = false;
        // Each turn writes one chunk taken; the run ends when none is left.
        for (;;) {
          const chunk = chunks.take();
          if (chunk === undefined || res.destroyed) break;
          if (!res.write(lines.line(chunk))) {
            blocked = true;
            res.once("drain", onDrain);
            return;
          }
        }
        // Ended, or the client left (`finish` then releases the backend).
        if (chunks.ended || res.destroyed) {
          finish();
          return;
        }
      } while (again);
    } catch (error) {
      finish(error);
    } finally {
      pumping = false;
    }
  }
  res.once("close", onClose);
  chunks.listen(pump);
  pump();
}

/**
 * A chunk's `data:` line, the same bytes as `data: ${JSON.stringify(chunk)}`. Every chunk of a stream shares
 * its id, object, created, model and backend: they are serialised once per stream, and each chunk adds only
 * its choices (and usage), in the key order ChunkRelay makes them in.
 */
export class ChunkLines {
  private id: string | undefined;
  private head = "";

  line(chunk: ChatCompletionChunk): string {
    if (chunk.id !== this.id) {
      this.id = chunk.id;
      const { id, object, created, model, backend } = chunk;
      this.head = `data: ${JSON.stringify({ id, object, created, model, backend }).slice(0, -1)},"choices":`;
    }
    const usage = chunk.usage === undefined ? "" : `,"usage":${JSON.stringify(chunk.usage)}`;
    return `${this.head}${JSON.stringify(chunk.choices)}${usage}}\n\n`;
  }
}

function sendFailure(res: Response, error: unknown, context: RequestContext): void {
  const failure: GatewayError = toGatewayError(error) ?? new InternalError();
  if (failure instanceof ClientClosedError || res.destroyed) return;
  if (failure instanceof InternalError)
    context.logger.error("stream failed", {
      error: error instanceof Error ? (error.stack ?? error.message) : String(error),
    });
  else context.logger.warn("stream interrupted", { code: failure.code, error: failure.message });
  context.failedStatus = failure.status;
  res.write(`data: ${JSON.stringify(errorBody(failure))}\n\n`);
}

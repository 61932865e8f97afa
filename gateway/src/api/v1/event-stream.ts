import type { Response } from "express";
import { ClientClosedError, type GatewayError, InternalError } from "../../errors";
import { errorBody, toGatewayError } from "../../middleware/error-handler";
import type { RequestContext } from "../../middleware/request-context";
import type { PullStream } from "../../utils/pull-stream";

/** Waits until the socket can take more, or the client is gone: a slow reader must not make us buffer. */
function drained(res: Response): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      res.off("drain", done);
      res.off("close", done);
      resolve();
    };
    res.on("drain", done);
    res.on("close", done);
  });
}

/**
 * Sends chunks as server-sent events, each flushed as it is made, and always ends with `data: [DONE]`.
 * A failure after the 200 went out cannot change the status, so it is sent in-band as an `{"error": …}`
 * event before `[DONE]`: OpenAI's SDK raises on that, where a stream that just stopped would pass as success.
 */
export async function sendEventStream(
  res: Response,
  chunks: PullStream<unknown>,
  context: RequestContext,
): Promise<void> {
  res.status(200).set({
    "content-type": "text/event-stream; charset=utf-8",
    "cache-control": "no-cache",
    "x-accel-buffering": "no",
  });
  res.flushHeaders();
  try {
    // Every chunk there is goes out in one synchronous run; the stream is awaited once per arrival.
    for (;;) {
      for (let chunk = chunks.take(); chunk !== undefined; chunk = chunks.take()) {
        // The client left: `finally` releases the backend.
        if (res.destroyed) return;
        if (!res.write(`data: ${JSON.stringify(chunk)}\n\n`)) await drained(res);
      }
      if (chunks.ended) break;
      if (res.destroyed) return;
      await chunks.wait();
    }
  } catch (error) {
    const failure: GatewayError = toGatewayError(error) ?? new InternalError();
    if (failure instanceof ClientClosedError || res.destroyed) return;
    if (failure instanceof InternalError)
      context.logger.error("stream failed", {
        error: error instanceof Error ? (error.stack ?? error.message) : String(error),
      });
    else context.logger.warn("stream interrupted", { code: failure.code, error: failure.message });
    context.failedStatus = failure.status;
    res.write(`data: ${JSON.stringify(errorBody(failure))}\n\n`);
  } finally {
    // Whatever ended the writing, the backend is released (a no-op once the stream is over).
    chunks.close();
  }
  if (!res.destroyed) res.end("data: [DONE]\n\n");
}

import type { Response } from "express";
import { ClientClosedError, type GatewayError, InternalError } from "../../errors";
import { errorBody, toGatewayError } from "../../middleware/error-handler";
import type { RequestContext } from "../../middleware/request-context";

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
  chunks: AsyncIterable<unknown>,
  context: RequestContext,
): Promise<void> {
  res.status(200).set({
    "content-type": "text/event-stream; charset=utf-8",
    "cache-control": "no-cache",
    "x-accel-buffering": "no",
  });
  res.flushHeaders();
  try {
    for await (const chunk of chunks) {
      if (res.destroyed) break;
      if (!res.write(`data: ${JSON.stringify(chunk)}\n\n`)) await drained(res);
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
  }
  if (!res.destroyed) res.end("data: [DONE]\n\n");
}

import { type IncomingMessage, type Server, type ServerResponse, STATUS_CODES } from "node:http";
import type { Duplex } from "node:stream";

/** What Node's HTTP parser reports for a request it could not read, as an OpenAI-style answer. */
function describe(code: string | undefined): { status: number; message: string; code: string } {
  switch (code) {
    case "HPE_HEADER_OVERFLOW":
      return {
        status: 431,
        message: "The request headers are larger than the limit of 16 KiB.",
        code: "headers_too_large",
      };
    case "ERR_HTTP_REQUEST_TIMEOUT":
      return { status: 408, message: "The request did not arrive in time.", code: "request_timeout" };
    default:
      return { status: 400, message: "The request is not valid HTTP.", code: "malformed_request" };
  }
}

const ANSWERING = Symbol("gateway.answering");
type Answering = Duplex & { [ANSWERING]?: ServerResponse };

/**
 * Requests that never reach Express (headers over Node's 16 KiB limit, broken HTTP, a request too slow to
 * arrive) get the same `{"error": ...}` body as every other failure instead of Node's bare status line,
 * and the connection is closed: after a parse error nothing more on it can be trusted.
 */
export function answerClientErrors(server: Server): void {
  // The last response begun on each socket, kept on the socket itself: an answer written into the middle of
  // one still being written would corrupt what the client reads. (A WeakMap entry and a `finish` listener
  // per request cost the GC an ephemeron and a closure that a stream kept for its whole life.)
  server.on("request", (req: IncomingMessage, res: ServerResponse) => {
    (req.socket as Answering)[ANSWERING] = res;
  });
  server.on("clientError", (error: NodeJS.ErrnoException, socket: Duplex) => {
    const answering = (socket as Answering)[ANSWERING];
    const midAnswer = answering !== undefined && answering.headersSent && !answering.writableFinished;
    if (error.code === "ECONNRESET" || !socket.writable || midAnswer) {
      socket.destroy();
      return;
    }
    const { status, message, code } = describe(error.code);
    const body = JSON.stringify({ error: { message, type: "invalid_request_error", param: null, code } });
    socket.end(
      `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ""}\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\nx-should-retry: false\r\nconnection: close\r\n\r\n${body}`,
    );
  });
}

// A minimal HTTP/1.1 client over raw sockets, for load generation only: one request at a time per
// connection, keep-alive, answers framed by Content-Length or chunked encoding. node:http's own client
// spends several times more CPU per request than the servers it would measure, and the load generator
// shares a core with the upstream in the proxy runs, so it has to be cheap.
import { connect } from "node:net";

const CRLFCRLF = Buffer.from("\r\n\r\n");
const LAST_CHUNK = Buffer.from("\r\n0\r\n\r\n");
const FIRST_CHUNK_END = Buffer.from("0\r\n\r\n");

/** `POST path` with `body`, as the bytes sent for every request. */
export function buildRequest({ host, port, path, body, headers = {} }) {
  const lines = [
    `POST ${path} HTTP/1.1`,
    `host: ${host}:${port}`,
    "content-type: application/json",
    `content-length: ${Buffer.byteLength(body)}`,
  ];
  for (const [name, value] of Object.entries(headers)) lines.push(`${name}: ${value}`);
  return Buffer.from(`${lines.join("\r\n")}\r\n\r\n${body}`);
}

/**
 * One keep-alive connection. `send(bytes, onFirstBody, onDone)` writes a request; `onFirstBody()` fires when
 * the first byte of the answer's body arrives (time to first byte), `onDone(status)` when it is complete.
 */
export class Connection {
  constructor(host, port, onClose) {
    this.socket = connect({ host, port, noDelay: true });
    this.buffer = Buffer.alloc(0);
    this.busy = false;
    this.open = false;
    this.ready = new Promise((resolve, reject) => {
      this.socket.once("connect", () => ((this.open = true), resolve()));
      this.socket.once("error", reject);
    });
    this.socket.on("error", () => undefined);
    this.socket.on("close", () => {
      this.open = false;
      const done = this.onDone;
      this.onDone = undefined;
      if (done !== undefined) done(0);
      onClose?.(this);
    });
    this.socket.on("data", (data) => this.read(data));
  }

  send(bytes, onDone, onFirstBody) {
    this.busy = true;
    this.onDone = onDone;
    this.onFirstBody = onFirstBody;
    this.status = 0;
    this.headerEnd = -1;
    this.socket.write(bytes);
  }

  read(data) {
    this.buffer = this.buffer.length === 0 ? data : Buffer.concat([this.buffer, data]);
    if (this.headerEnd === -1) {
      const end = this.buffer.indexOf(CRLFCRLF);
      if (end === -1) return;
      this.headerEnd = end + 4;
      const head = this.buffer.toString("latin1", 0, end);
      this.status = Number(head.slice(9, 12));
      const length = /\r\ncontent-length: *(\d+)/i.exec(head);
      this.contentLength = length === null ? -1 : Number(length[1]);
      this.chunked = length === null && /\r\ntransfer-encoding: *chunked/i.test(head);
    }
    if (this.onFirstBody !== undefined && this.buffer.length > this.headerEnd) {
      const first = this.onFirstBody;
      this.onFirstBody = undefined;
      first();
    }
    let complete = -1;
    if (this.contentLength >= 0) {
      if (this.buffer.length >= this.headerEnd + this.contentLength) complete = this.headerEnd + this.contentLength;
    } else if (this.chunked) {
      // The terminating zero-length chunk: either the whole body is empty or it follows a chunk's CRLF.
      if (this.buffer.indexOf(FIRST_CHUNK_END, this.headerEnd) === this.headerEnd)
        complete = this.headerEnd + FIRST_CHUNK_END.length;
      else {
        const last = this.buffer.indexOf(LAST_CHUNK, this.headerEnd);
        if (last !== -1) complete = last + LAST_CHUNK.length;
      }
    }
    if (complete === -1) return;
    this.buffer = complete === this.buffer.length ? Buffer.alloc(0) : this.buffer.subarray(complete);
    this.busy = false;
    const done = this.onDone;
    this.onDone = undefined;
    done?.(this.status);
  }

  close() {
    this.socket.destroy();
  }
}

// The floor of the gateway's own plumbing: a node:http server that relays each request to the upstream through
// undici's `Pool.dispatch` (as the http backend does) and writes each upstream read to the client as one chunk
// frame string straight to the socket (as api/v1/event-stream.ts does). No SSE or JSON parsing, no Express, no
// checks: what the gateway costs above this is its own work per request and per chunk (bench/README.md, issue 13).
//
//   UPSTREAM=http://127.0.0.1:PORT PORT=0 node bench/plumbing-proxy.mjs   -> prints {"port": N} once listening
//   node bench/streams.mjs --levels=1000x10 proxy=bench/proxy.mjs,UPSTREAM={upstream} \
//     floor=bench/plumbing-proxy.mjs,UPSTREAM={upstream} gateway=dist/gateway/src/main.js
import { createServer } from "node:http";
import { Pool } from "undici";

const upstream = new URL(process.env.UPSTREAM ?? "http://127.0.0.1:8081");
const pool = new Pool(upstream.origin, { connections: null, headersTimeout: 0, bodyTimeout: 0 });

const server = createServer({ keepAliveTimeout: 60_000 }, (req, res) => {
  const parts = [];
  req.on("data", (part) => parts.push(part));
  req.on("end", () => {
    /** The client's socket, once the head is out and the answer is chunked. */
    let socket;
    let upstreamCall;
    // A client that leaves mid-answer releases the upstream request (bench/proxy.mjs does the same).
    res.on("close", () => {
      if (!res.writableFinished) upstreamCall?.abort(new Error("client left"));
    });
    pool.dispatch(
      {
        method: req.method,
        path: req.url,
        headers: { "content-type": req.headers["content-type"] ?? "application/json" },
        body: Buffer.concat(parts),
      },
      {
        onRequestStart(controller) {
          upstreamCall = controller;
        },
        onResponseStart(_controller, status, headers) {
          res.statusCode = status;
          res.setHeader("content-type", headers["content-type"] ?? "application/octet-stream");
        },
        onResponseData(_controller, chunk) {
          if (socket !== undefined) {
            const text = chunk.toString("utf8");
            socket.write(`${Buffer.byteLength(text).toString(16)}\r\n${text}\r\n`);
            return;
          }
          res.write(chunk);
          if (res.chunkedEncoding && res.socket !== null) socket = res.socket;
        },
        onResponseEnd() {
          res.end();
        },
        onResponseError() {
          if (!res.headersSent) res.writeHead(502);
          res.end();
        },
      },
    );
  });
});

server.listen(Number(process.env.PORT ?? 0), process.env.HOST ?? "127.0.0.1", () => {
  process.stdout.write(`${JSON.stringify({ port: server.address().port })}\n`);
});
process.on("SIGTERM", () => process.exit(0));

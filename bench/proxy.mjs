// The floor of any Node hop: a bare node:http server that pipes each request's bytes to the upstream through
// a keep-alive agent and pipes the answer back, headers and status unchanged. No parsing, no validation, no
// logging, no metrics: whatever a gateway adds on top of this hop is its own cost.
//
//   UPSTREAM=http://127.0.0.1:PORT PORT=0 node bench/proxy.mjs   -> prints {"port": N} once listening
import { Agent, createServer, request } from "node:http";

const upstream = new URL(process.env.UPSTREAM ?? "http://127.0.0.1:8081");
// No cap on sockets: a stream holds its upstream connection for as long as it lasts, and the concurrent-streams
// benchmark keeps thousands open (a cap would queue them, not relay them).
const agent = new Agent({ keepAlive: true });

const server = createServer({ keepAliveTimeout: 60_000 }, (req, res) => {
  const forward = request(
    { agent, host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers },
    (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    },
  );
  // A client that leaves mid-answer releases the upstream request, as any proxy must: left open, each one
  // held an upstream connection (and its unread stream) for good.
  res.on("close", () => {
    if (!res.writableFinished) forward.destroy();
  });
  forward.on("error", () => {
    if (!res.headersSent) res.writeHead(502);
    res.end();
  });
  req.pipe(forward);
});
server.listen(Number(process.env.PORT ?? 0), "127.0.0.1", () => {
  process.stdout.write(`${JSON.stringify({ port: server.address().port })}\n`);
});
process.on("SIGTERM", () => process.exit(0));

// The floor for an Express gateway: Express 5 with express.json(), one undici Pool to the upstream, the
// upstream's answer parsed and re-serialised with one field added. No validation, logging, metrics, ids
// or timeouts: the gap between this and our gateway is what those cost; the gap between this and
// bench/proxy.mjs is what Express and the JSON round trip cost.
//
//   UPSTREAM=http://127.0.0.1:PORT PORT=N node bench/express-undici.mjs
import express from "express";
import { Pool } from "undici";

const upstream = new URL(process.env.UPSTREAM ?? "http://127.0.0.1:8081");
const pool = new Pool(upstream.origin);
const app = express();
app.disable("x-powered-by");
app.disable("etag");
app.post("/v1/chat/completions", express.json(), async (req, res) => {
  const answer = await pool.request({
    method: "POST",
    path: "/v1/chat/completions",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(req.body),
  });
  const completion = await answer.body.json();
  res.status(answer.statusCode).json({ ...completion, backend: "bench" });
});
app.listen(Number(process.env.PORT ?? 0), "127.0.0.1");
process.on("SIGTERM", () => process.exit(0));

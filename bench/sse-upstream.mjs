// The upstream of the concurrent-streams benchmark: a bare node:http server that answers every POST with a
// server-sent event stream of CHUNKS content chunks at RATE chunks per second, then a finish chunk, a usage
// chunk and `data: [DONE]`, as an OpenAI-compatible server does with `stream_options.include_usage`.
// All open streams are driven from one timer: every TICK_MS it writes the next chunk of the streams in one
// of its slots (a stream's slot is where it fell when it arrived), so each stream keeps its own schedule and
// the writes spread evenly over time instead of arriving as one burst per period.
//
//   PORT=0 RATE=10 CHUNKS=100 node bench/sse-upstream.mjs   -> prints {"port": N} on stdout once listening
import { createServer } from "node:http";

const RATE = Number(process.env.RATE ?? 10);
const CHUNKS = Number(process.env.CHUNKS ?? 100);
const TICK_MS = 5;
const SLOTS = Math.max(1, Math.round(1000 / RATE / TICK_MS));

const head =
  '{"id":"chatcmpl-bench-stream","object":"chat.completion.chunk","created":1700000000,"model":"bench-upstream"';
const event = (body) => `data: ${head},${body}}\n\n`;
const FIRST = event(
  '"choices":[{"index":0,"delta":{"role":"assistant","content":"Hello"},"finish_reason":null,"logprobs":null}]',
);
const NEXT = event('"choices":[{"index":0,"delta":{"content":" word"},"finish_reason":null,"logprobs":null}]');
const END =
  event('"choices":[{"index":0,"delta":{},"finish_reason":"stop","logprobs":null}]') +
  event(`"choices":[],"usage":{"prompt_tokens":23,"completion_tokens":${CHUNKS},"total_tokens":${23 + CHUNKS}}`) +
  "data: [DONE]\n\n";

/** The open streams, by slot: each tick serves one slot. */
const slots = Array.from({ length: SLOTS }, () => new Set());
let tick = 0;

const server = createServer({ keepAliveTimeout: 60_000 }, (req, res) => {
  req.resume();
  req.on("end", () => {
    res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
    // The first chunk at once (a model's first token leaves before the others exist), the rest on schedule.
    res.write(FIRST);
    const stream = { res, sent: 1 };
    const slot = slots[(tick + 1) % SLOTS];
    slot.add(stream);
    res.on("close", () => slot.delete(stream));
  });
});

// Ticks are counted from the clock, not from the timer's firings: a late firing serves every slot it missed,
// so the schedule holds while the upstream's core is busy.
const startedAt = performance.now();
setInterval(() => {
  const due = Math.floor((performance.now() - startedAt) / TICK_MS);
  while (tick < due) {
    tick++;
    const slot = slots[tick % SLOTS];
    for (const stream of slot) {
      if (stream.sent < CHUNKS) {
        stream.res.write(NEXT);
        stream.sent++;
      } else {
        slot.delete(stream);
        stream.res.end(END);
      }
    }
  }
}, TICK_MS);

server.listen(Number(process.env.PORT ?? 0), "127.0.0.1", 4096, () => {
  process.stdout.write(`${JSON.stringify({ port: server.address().port })}\n`);
});
process.on("SIGTERM", () => process.exit(0));

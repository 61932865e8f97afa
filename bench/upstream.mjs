// The ceiling: a bare node:http server answering every POST with one fixed chat completion (or, when the
// body asks for `"stream":true`, a fixed stream of server-sent events). Nothing a real upstream does is
// modelled here, on purpose: it measures what one Node process can answer, so every other number in the
// benchmark is a fraction of it.
//
//   PORT=0 node bench/upstream.mjs   -> prints {"port": N} on stdout once listening
import { createServer } from "node:http";

const COMPLETION = Buffer.from(
  JSON.stringify({
    id: "chatcmpl-bench-0001",
    object: "chat.completion",
    created: 1700000000,
    model: "bench-upstream",
    choices: [
      {
        index: 0,
        message: {
          role: "assistant",
          content: "Hello! I am doing well, thank you for asking. How can I help you today?",
        },
        finish_reason: "stop",
        logprobs: null,
      },
    ],
    usage: { prompt_tokens: 23, completion_tokens: 17, total_tokens: 40 },
  }),
);

const WORDS = ["Hello!", " I", " am", " doing", " well,", " thank", " you."];
function chunk(delta, finishReason, usage) {
  const body = {
    id: "chatcmpl-bench-0001",
    object: "chat.completion.chunk",
    created: 1700000000,
    model: "bench-upstream",
    choices: [{ index: 0, delta, finish_reason: finishReason, logprobs: null }],
  };
  if (usage !== undefined) body.usage = usage;
  return `data: ${JSON.stringify(body)}\n\n`;
}
// The first event alone, then the rest: time to first byte is measured to the first event, and a real
// model's first token also leaves before the others exist.
const STREAM_FIRST = chunk({ role: "assistant", content: WORDS[0] }, null);
const STREAM_REST =
  WORDS.slice(1)
    .map((word) => chunk({ content: word }, null))
    .join("") +
  chunk({}, "stop") +
  `data: ${JSON.stringify({ id: "chatcmpl-bench-0001", object: "chat.completion.chunk", created: 1700000000, model: "bench-upstream", choices: [], usage: { prompt_tokens: 23, completion_tokens: 7, total_tokens: 30 } })}\n\n` +
  "data: [DONE]\n\n";

const STREAM_FLAG = Buffer.from('"stream":true');

const server = createServer({ keepAliveTimeout: 60_000 }, (req, res) => {
  const parts = [];
  req.on("data", (part) => parts.push(part));
  req.on("end", () => {
    const body = parts.length === 1 ? parts[0] : Buffer.concat(parts);
    if (body.indexOf(STREAM_FLAG) !== -1) {
      res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
      res.write(STREAM_FIRST);
      // The rest follows on the next turn of the event loop, as separate writes do on a real server.
      setImmediate(() => res.end(STREAM_REST));
      return;
    }
    res.writeHead(200, { "content-type": "application/json", "content-length": COMPLETION.length });
    res.end(COMPLETION);
  });
});
server.listen(Number(process.env.PORT ?? 0), "127.0.0.1", () => {
  process.stdout.write(`${JSON.stringify({ port: server.address().port })}\n`);
});
process.on("SIGTERM", () => process.exit(0));

import { Registry } from "prom-client";
import { ChunkLines, ResponseEventLines } from "../../../gateway/src/api/v1/event-stream";
import type { StreamEvent } from "../../../gateway/src/backends/backend";
import { createMetrics } from "../../../gateway/src/observability/metrics";
import type { ChatCompletionChunk } from "../../../gateway/src/schemas/chat";
import { InferenceService } from "../../../gateway/src/services/inference";
import { FakeBackend } from "../../support/fake-backend";

const options = { requestId: "r", signal: new AbortController().signal, startedAt: performance.now() };
const events: StreamEvent[] = [
  { delta: { content: 'He said "hi" \u2028 é \\' } },
  { delta: { tool_calls: [{ index: 0, function: { name: "f", arguments: '{"a":1}' } }] }, finishReason: "tool_calls" },
  { usage: { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 } },
];

async function chunksOf(includeUsage: boolean, model: string): Promise<ChatCompletionChunk[]> {
  const backend = new FakeBackend("s", { events });
  const service = new InferenceService([backend], backend, createMetrics(new Registry(), ["s"]));
  const request = {
    model,
    messages: [{ role: "user", content: "Hi" }],
    stream: true,
    ...(includeUsage ? { stream_options: { include_usage: true } } : {}),
  };
  const chunks: ChatCompletionChunk[] = [];
  for await (const chunk of await service.openStream(backend, request, options)) chunks.push(chunk);
  return chunks;
}

describe("ChunkLines", () => {
  it.each([
    [true, "a model"],
    [false, 'a "quoted" model'],
    [true, "modèle ✓"],
  ])("writes what JSON.stringify writes for every chunk a stream makes (include_usage %s)", async (usage, model) => {
    const chunks = await chunksOf(usage, model);
    expect(chunks.length).toBeGreaterThanOrEqual(usage ? 3 : 2);
    const lines = new ChunkLines();
    for (const chunk of chunks) expect(lines.line(chunk)).toBe(`data: ${JSON.stringify(chunk)}\n\n`);
  });

  it.each([
    [true, "a model"],
    [false, "modèle ✓"],
  ])("frames each line as one HTTP/1.1 chunk, its size in UTF-8 bytes (include_usage %s)", async (usage, model) => {
    const chunks = await chunksOf(usage, model);
    const lines = new ChunkLines();
    for (const chunk of chunks) {
      const line = `data: ${JSON.stringify(chunk)}\n\n`;
      expect(lines.frame(chunk)).toBe(`${Buffer.byteLength(line).toString(16)}\r\n${line}\r\n`);
    }
  });

  it("serialises the shared fields again for another stream's chunks", async () => {
    const [first] = await chunksOf(false, "one");
    const [second] = await chunksOf(true, "two");
    const lines = new ChunkLines();
    for (const chunk of [first, second, first]) {
      if (chunk === undefined) throw new Error("no chunk");
      expect(lines.line(chunk)).toBe(`data: ${JSON.stringify(chunk)}\n\n`);
    }
  });
});

describe("ResponseEventLines", () => {
  it("writes each event under its own name, and no [DONE] at the end", () => {
    const lines = new ResponseEventLines();
    const event = { type: "response.output_text.delta", delta: "x", sequence_number: 4 };
    expect(lines.line(event)).toBe(`event: response.output_text.delta\ndata: ${JSON.stringify(event)}\n\n`);
    expect(lines.end).toBe("");
    const text = { type: "response.output_text.delta", delta: "é ✓", sequence_number: 5 };
    const line = lines.line(text);
    expect(lines.frame(text)).toBe(`${Buffer.byteLength(line).toString(16)}\r\n${line}\r\n`);
  });

  it("reports a failure as the API's flat error event, numbered after the last event", () => {
    const lines = new ResponseEventLines();
    lines.line({ type: "response.created", sequence_number: 0 });
    lines.line({ type: "response.output_text.delta", delta: "x", sequence_number: 7 });
    const error = { message: "cut", type: "upstream_error", param: null, code: "stream_interrupted" };
    const written = lines.failure({ error });
    expect(written.startsWith("event: error\ndata: ")).toBe(true);
    expect(JSON.parse(written.slice("event: error\ndata: ".length))).toEqual({
      type: "error",
      code: "stream_interrupted",
      message: "cut",
      param: null,
      sequence_number: 8,
    });
  });
});

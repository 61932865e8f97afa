import { parseServerSentEvents, type ServerSentEvent } from "../../../gateway/src/utils/sse";

async function parse(...pieces: string[]): Promise<ServerSentEvent[]> {
  async function* body() {
    for (const piece of pieces) yield Buffer.from(piece);
  }
  const events: ServerSentEvent[] = [];
  for await (const event of parseServerSentEvents(body())) events.push(event);
  return events;
}

describe("parseServerSentEvents", () => {
  it("reads data events separated by blank lines", async () => {
    expect(await parse('data: {"a":1}\n\ndata: [DONE]\n\n')).toEqual([
      { event: undefined, data: '{"a":1}' },
      { event: undefined, data: "[DONE]" },
    ]);
  });

  it("joins events split anywhere across chunks, CRLF included", async () => {
    expect(await parse("da", "ta: one\r", "\n\r\ndata:", " two\r\n", "\r\n")).toEqual([
      { event: undefined, data: "one" },
      { event: undefined, data: "two" },
    ]);
  });

  it("skips comments (keep-alives) and keeps the event type", async () => {
    expect(await parse(": ping\n\nevent: error\ndata: {\"error\":{}}\n\n")).toEqual([{ event: "error", data: '{"error":{}}' }]);
  });

  it("joins multi-line data with newlines and keeps a value without the optional space", async () => {
    expect(await parse("data:first\ndata: second\n\n")).toEqual([{ event: undefined, data: "first\nsecond" }]);
  });

  it("drops a partial event at the end of the stream", async () => {
    expect(await parse("data: whole\n\ndata: cut off")).toEqual([{ event: undefined, data: "whole" }]);
  });

  it("decodes a multi-byte character split across chunks", async () => {
    const bytes = Buffer.from("data: é\n\n");
    async function* body() {
      yield bytes.subarray(0, 7);
      yield bytes.subarray(7);
    }
    const events: ServerSentEvent[] = [];
    for await (const event of parseServerSentEvents(body())) events.push(event);
    expect(events).toEqual([{ event: undefined, data: "é" }]);
  });
});

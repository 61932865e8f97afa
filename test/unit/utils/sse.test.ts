import {
  DEFAULT_MAX_EVENT_BYTES,
  EventTooLargeError,
  type ServerSentEvent,
  SseParser,
} from "../../../gateway/src/utils/sse";

/** The events of a whole byte stream, fed to one SseParser chunk by chunk as the http backend does. */
async function* parseServerSentEvents(
  body: AsyncIterable<Buffer | string>,
  maxEventBytes = DEFAULT_MAX_EVENT_BYTES,
): AsyncGenerator<ServerSentEvent> {
  const parser = new SseParser(maxEventBytes);
  for await (const chunk of body) {
    const events: ServerSentEvent[] = [];
    parser.push(chunk, { onEvent: (event) => events.push(event) });
    yield* events;
  }
}

async function parseWith(maxEventBytes: number | undefined, pieces: readonly string[]): Promise<ServerSentEvent[]> {
  async function* body() {
    for (const piece of pieces) yield Buffer.from(piece);
  }
  const events: ServerSentEvent[] = [];
  for await (const event of parseServerSentEvents(body(), maxEventBytes)) events.push(event);
  return events;
}

function parse(...pieces: string[]): Promise<ServerSentEvent[]> {
  return parseWith(undefined, pieces);
}

/** `text` cut into pieces of `size` characters. */
function split(text: string, size: number): string[] {
  return Array.from({ length: Math.ceil(text.length / size) }, (_, index) =>
    text.slice(index * size, (index + 1) * size),
  );
}

describe("SseParser", () => {
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
    expect(await parse(': ping\n\nevent: error\ndata: {"error":{}}\n\n')).toEqual([
      { event: "error", data: '{"error":{}}' },
    ]);
  });

  it("reads a data field however short its line: empty values, no colon, one space dropped, other names ignored", async () => {
    expect(await parse("data:\n\n", "data: \n\n", "data\n\n", "data:  two\n\n", "datum: x\ndata:y\n\n")).toEqual([
      { event: undefined, data: "" },
      { event: undefined, data: "" },
      { event: undefined, data: "" },
      { event: undefined, data: " two" },
      { event: undefined, data: "y" },
    ]);
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

  it("drops a byte-order mark that opens the stream, whole or split, and only there", async () => {
    const bom = "\ufeff";
    expect(await parse(`${bom}data: a\n\n`)).toEqual([{ event: undefined, data: "a" }]);
    const bytes = Buffer.from(`${bom}data: b\n\n${bom}data: c\n\n`);
    async function* body() {
      for (let at = 0; at < bytes.length; at++) yield bytes.subarray(at, at + 1);
    }
    const events: ServerSentEvent[] = [];
    for await (const event of parseServerSentEvents(body())) events.push(event);
    // A mark later in the stream is not at its start: it makes an unknown field, which is ignored.
    expect(events).toEqual([{ event: undefined, data: "b" }]);
  });

  it("joins one event split across many chunks, one character each", async () => {
    const text = 'event: delta\ndata: {"a":1}\ndata: {"b":2}\n\ndata: [DONE]\n\n';
    expect(await parse(...split(text, 1))).toEqual([
      { event: "delta", data: '{"a":1}\n{"b":2}' },
      { event: undefined, data: "[DONE]" },
    ]);
  });

  it("joins a long line that arrives in many chunks", async () => {
    const value = "x".repeat(100_000);
    expect(await parse(...split(`data: ${value}\n\n`, 1000))).toEqual([{ event: undefined, data: value }]);
  });

  it("reads a CRLF split across chunks as one line end, and a lone CR before another CR as a blank line", async () => {
    expect(await parse("data: a\r", "\ndata: b\r", "\n\r", "\ndata: c\r", "\r")).toEqual([
      { event: undefined, data: "a\nb" },
      { event: undefined, data: "c" },
    ]);
  });

  it("reads a CR at a chunk's end followed by an LF alone as one line end, not an empty line", async () => {
    expect(await parse("data: a\r", "\n", "data: b\n", "\n")).toEqual([{ event: undefined, data: "a\nb" }]);
  });

  it("accepts events up to the limit, counting each event on its own", async () => {
    // "data: " + 10 characters + line end: 17 bytes per line.
    const line = `data: ${"y".repeat(10)}\n`;
    const events = await parseWith(34, [`${line}${line}\n`, `${line}${line}\n`]);
    expect(events).toHaveLength(2);
  });

  it("hands over the events of a read as it finds them, so those before an oversized one are not lost", () => {
    const parser = new SseParser(34);
    const seen: ServerSentEvent[] = [];
    expect(() =>
      parser.push(`data: a\n\ndata: b\n\ndata: ${"z".repeat(40)}\n\n`, { onEvent: (event) => seen.push(event) }),
    ).toThrow(EventTooLargeError);
    expect(seen).toEqual([
      { event: undefined, data: "a" },
      { event: undefined, data: "b" },
    ]);
  });

  it("starts each event afresh: one event's data lines never leak into the next", () => {
    const parser = new SseParser();
    const seen: string[] = [];
    for (const text of ["data: 1\ndata: 2\n\n", "data: 3\n\n", "event: x\n\ndata: 4\n", "\n"])
      parser.push(text, { onEvent: (event) => seen.push(`${event.event ?? ""}:${event.data}`) });
    expect(seen).toEqual([":1\n2", ":3", ":4"]);
  });

  it("fails an event past the limit, counted in bytes", async () => {
    await expect(parseWith(34, [`data: ${"y".repeat(10)}\ndata: ${"y".repeat(11)}\n\n`])).rejects.toThrow(
      new EventTooLargeError(34),
    );
    // 14 two-byte characters: 14 characters but 28 bytes of value, 35 with "data: " and the line end.
    await expect(parseWith(34, [`data: ${"é".repeat(14)}\n\n`])).rejects.toBeInstanceOf(EventTooLargeError);
  });

  it("fails once an event passes the limit, without waiting for a line end that never comes", async () => {
    const limit = 64 * 1024;
    const chunk = "x".repeat(1024);
    let pulled = 0;
    async function* endless() {
      yield Buffer.from("data: ");
      // Bounded, but far past the limit: the parser must give up long before the end.
      for (; pulled < 10_000; pulled++) yield Buffer.from(chunk);
    }
    const reading = (async () => {
      for await (const _event of parseServerSentEvents(endless(), limit)) {
        // no event ever completes
      }
    })();
    await expect(reading).rejects.toThrow("a stream event is larger than 65536 bytes");
    expect(pulled).toBeLessThanOrEqual(limit / chunk.length + 1);
  });
});

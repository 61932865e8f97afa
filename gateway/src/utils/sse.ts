/** One server-sent event: its `event:` type (when given) and its `data:` lines joined by newlines. */
export interface ServerSentEvent {
  readonly event: string | undefined;
  readonly data: string;
}

/** An event bigger than this is refused: a broken upstream must not make us buffer without end. */
const MAX_EVENT_CHARS = 8 * 1024 * 1024;

/**
 * Reads `text/event-stream` (the WHATWG format OpenAI-compatible servers stream in): events are separated
 * by a blank line, lines end in LF, CRLF or CR, `:` lines are comments (keep-alives), and only `event` and
 * `data` fields matter here. A byte stream that ends mid-event drops that partial event, as the spec says.
 */
export async function* parseServerSentEvents(body: AsyncIterable<Buffer | string>): AsyncGenerator<ServerSentEvent> {
  const decoder = new TextDecoder();
  let buffer = "";
  let event: string | undefined;
  let data: string[] = [];
  let size = 0;
  for await (const chunk of body) {
    buffer += typeof chunk === "string" ? chunk : decoder.decode(chunk, { stream: true });
    let start = 0;
    for (;;) {
      const end = lineEnd(buffer, start);
      if (end === -1) break;
      const line = buffer.slice(start, end);
      // A CR at the very end may be the first half of a CRLF still in flight: wait for the next chunk.
      if (buffer[end] === "\r" && end + 1 === buffer.length) break;
      start = end + (buffer[end] === "\r" && buffer[end + 1] === "\n" ? 2 : 1);
      if (line === "") {
        if (data.length > 0) yield { event, data: data.join("\n") };
        event = undefined;
        data = [];
        size = 0;
        continue;
      }
      if (line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon === -1 ? line : line.slice(0, colon);
      let value = colon === -1 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "data") {
        size += value.length;
        if (size > MAX_EVENT_CHARS) throw new Error(`an event is larger than ${MAX_EVENT_CHARS} characters`);
        data.push(value);
      } else if (field === "event") {
        event = value;
      }
    }
    buffer = buffer.slice(start);
    if (buffer.length > MAX_EVENT_CHARS) throw new Error(`a line is longer than ${MAX_EVENT_CHARS} characters`);
  }
}

function lineEnd(text: string, from: number): number {
  for (let i = from; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code === 10 || code === 13) return i;
  }
  return -1;
}

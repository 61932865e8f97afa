/** One server-sent event: its `event:` type (when given) and its `data:` lines joined by newlines. */
export interface ServerSentEvent {
  readonly event: string | undefined;
  readonly data: string;
}

/** The default bound on one event (a backend's `max_event_bytes`): far past any real chunk of a chat answer. */
export const DEFAULT_MAX_EVENT_BYTES = 8 * 1024 * 1024;

/** An event (or a line still without its end) grew past the bound: a broken upstream must not make us buffer without end. */
export class EventTooLargeError extends Error {
  constructor(readonly maxBytes: number) {
    super(`a stream event is larger than ${maxBytes} bytes`);
    this.name = "EventTooLargeError";
  }
}

/**
 * Reads `text/event-stream` (the WHATWG format OpenAI-compatible servers stream in): events are separated
 * by a blank line, lines end in LF, CRLF or CR, `:` lines are comments (keep-alives), and only `event` and
 * `data` fields matter here. A byte stream that ends mid-event drops that partial event, as the spec says.
 *
 * Each chunk is scanned once: a line still without its end is kept as a list of pieces and joined once
 * when its end arrives (rescanning and re-copying it per chunk made one long line quadratic). Its size is
 * checked per chunk, so an event past `maxEventBytes` fails as soon as it is, line end or not.
 */
export async function* parseServerSentEvents(
  body: AsyncIterable<Buffer | string>,
  maxEventBytes = DEFAULT_MAX_EVENT_BYTES,
): AsyncGenerator<ServerSentEvent> {
  const decoder = new TextDecoder();
  /** The line in progress, in the pieces it arrived in. */
  let pieces: string[] = [];
  let pendingBytes = 0;
  /** The previous chunk ended in CR: an LF that starts this one is the rest of that CRLF, not a blank line. */
  let afterCr = false;
  let event: string | undefined;
  let data: string[] = [];
  /** Bytes of the current event's lines already read whole. */
  let eventBytes = 0;
  for await (const chunk of body) {
    const text = typeof chunk === "string" ? chunk : decoder.decode(chunk, { stream: true });
    if (text === "") continue;
    let start = afterCr && text.charCodeAt(0) === 10 ? 1 : 0;
    afterCr = false;
    for (;;) {
      const end = lineEnd(text, start);
      if (end === -1) break;
      const tail = text.slice(start, end);
      const line = pieces.length === 0 ? tail : `${pieces.join("")}${tail}`;
      pieces = [];
      pendingBytes = 0;
      if (text.charCodeAt(end) === 13) {
        if (end + 1 === text.length) afterCr = true;
        start = text.charCodeAt(end + 1) === 10 ? end + 2 : end + 1;
      } else {
        start = end + 1;
      }
      if (line === "") {
        if (data.length > 0) yield { event, data: data.join("\n") };
        event = undefined;
        data = [];
        eventBytes = 0;
        continue;
      }
      if (line.startsWith(":")) continue;
      eventBytes += Buffer.byteLength(line) + 1;
      if (eventBytes > maxEventBytes) throw new EventTooLargeError(maxEventBytes);
      const colon = line.indexOf(":");
      const field = colon === -1 ? line : line.slice(0, colon);
      let value = colon === -1 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "data") data.push(value);
      else if (field === "event") event = value;
    }
    if (start < text.length) {
      const rest = text.slice(start);
      pieces.push(rest);
      pendingBytes += Buffer.byteLength(rest);
      // Checked without waiting for the line's end, which a broken upstream may never send.
      if (eventBytes + pendingBytes > maxEventBytes) throw new EventTooLargeError(maxEventBytes);
    }
  }
}

function lineEnd(text: string, from: number): number {
  for (let i = from; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code === 10 || code === 13) return i;
  }
  return -1;
}

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
 * Synchronous, fed one chunk at a time as the bytes arrive (the http backend's dispatch handler calls it
 * from undici's data callback): no stream or promise per chunk. Each chunk is scanned once: a line still
 * without its end is kept as a list of pieces and joined once when its end arrives (rescanning and
 * re-copying it per chunk made one long line quadratic). Its size is checked per chunk, so an event past
 * `maxEventBytes` fails as soon as it is, line end or not.
 */
export class SseParser {
  private readonly decoder = new TextDecoder();
  /** The line in progress, in the pieces it arrived in. */
  private pieces: string[] = [];
  private pendingBytes = 0;
  /** The previous chunk ended in CR: an LF that starts this one is the rest of that CRLF, not a blank line. */
  private afterCr = false;
  private event: string | undefined;
  private data: string[] = [];
  /** Bytes of the current event's lines already read whole. */
  private eventBytes = 0;

  constructor(private readonly maxEventBytes = DEFAULT_MAX_EVENT_BYTES) {}

  /** Appends to `out` the events `chunk` completes; throws EventTooLargeError past the bound. */
  push(chunk: Buffer | string, out: ServerSentEvent[]): void {
    const text = typeof chunk === "string" ? chunk : this.decoder.decode(chunk, { stream: true });
    if (text === "") return;
    let start = this.afterCr && text.charCodeAt(0) === 10 ? 1 : 0;
    this.afterCr = false;
    for (;;) {
      const end = lineEnd(text, start);
      if (end === -1) break;
      const tail = text.slice(start, end);
      const line = this.pieces.length === 0 ? tail : `${this.pieces.join("")}${tail}`;
      this.pieces.length = 0;
      this.pendingBytes = 0;
      if (text.charCodeAt(end) === 13) {
        if (end + 1 === text.length) this.afterCr = true;
        start = text.charCodeAt(end + 1) === 10 ? end + 2 : end + 1;
      } else {
        start = end + 1;
      }
      this.line(line, out);
    }
    if (start < text.length) {
      const rest = text.slice(start);
      this.pieces.push(rest);
      this.pendingBytes += Buffer.byteLength(rest);
      // Checked without waiting for the line's end, which a broken upstream may never send.
      if (this.eventBytes + this.pendingBytes > this.maxEventBytes) throw new EventTooLargeError(this.maxEventBytes);
    }
  }

  private line(line: string, out: ServerSentEvent[]): void {
    if (line === "") {
      if (this.data.length > 0)
        out.push({ event: this.event, data: this.data.length === 1 ? (this.data[0] ?? "") : this.data.join("\n") });
      this.event = undefined;
      // Emptied, not replaced: a new array per event would live until the next one (garbage that survives GCs).
      this.data.length = 0;
      this.eventBytes = 0;
      return;
    }
    if (line.charCodeAt(0) === 58) return; // ":" starts a comment
    this.eventBytes += Buffer.byteLength(line) + 1;
    if (this.eventBytes > this.maxEventBytes) throw new EventTooLargeError(this.maxEventBytes);
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.charCodeAt(0) === 32) value = value.slice(1);
    if (field === "data") this.data.push(value);
    else if (field === "event") this.event = value;
  }
}

/** The events of a whole byte stream, as SseParser reads them. */
export async function* parseServerSentEvents(
  body: AsyncIterable<Buffer | string>,
  maxEventBytes = DEFAULT_MAX_EVENT_BYTES,
): AsyncGenerator<ServerSentEvent> {
  const parser = new SseParser(maxEventBytes);
  for await (const chunk of body) {
    const events: ServerSentEvent[] = [];
    parser.push(chunk, events);
    yield* events;
  }
}

function lineEnd(text: string, from: number): number {
  for (let i = from; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code === 10 || code === 13) return i;
  }
  return -1;
}

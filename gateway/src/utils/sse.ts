/** One server-sent event: its `event:` type (when given) and its `data:` lines joined by newlines. */
export interface ServerSentEvent {
  readonly event: string | undefined;
  readonly data: string;
}

/**
 * Who hears a parser's events: an object with a method, not a closure. A closure made per parser is two
 * more objects (the function and its context) that every event touches, each a cache miss at thousands
 * of open streams.
 */
export interface SseHandler {
  onEvent(event: ServerSentEvent): void;
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
 * from undici's data callback): no stream or promise per chunk. It works on the bytes: line ends are found
 * with a native scan (a CR or LF byte is never part of a multi-byte UTF-8 character), and only a field's
 * value is decoded, once, so a read costs one string per data line and no decoder state per stream. A line
 * still without its end is kept as the byte slices it arrived in and joined once its end arrives (rescanning
 * it per chunk made one long line quadratic). Its size is checked per chunk, so an event past `maxEventBytes`
 * fails as soon as it is, line end or not.
 */
export class SseParser {
  /** The line in progress, in the slices it arrived in. */
  private pieces: Buffer[] = [];
  private pendingBytes = 0;
  /** The previous chunk ended in CR: an LF that starts this one is the rest of that CRLF, not a blank line. */
  private afterCr = false;
  /** Nothing read yet: a byte-order mark may open the stream, and is dropped. */
  private atStart = true;
  private event: string | undefined;
  /** The event's first data line: most events have just one, and keep no array. */
  private firstData: string | undefined;
  /** Its further data lines, if any. */
  private moreData: string[] | undefined;
  /** Bytes of the current event's lines already read whole. */
  private eventBytes = 0;

  constructor(private readonly maxEventBytes = DEFAULT_MAX_EVENT_BYTES) {}

  /**
   * Hands `handler` each event `chunk` completes, in order, as it is found (a callback, not an array to
   * fill: emptying an array drops its storage, so one per read was a new allocation per read); throws
   * EventTooLargeError past the bound, after the events before it were handed over.
   */
  push(chunk: Buffer | string, handler: SseHandler): void {
    let bytes = typeof chunk === "string" ? Buffer.from(chunk) : chunk;
    if (bytes.length === 0) return;
    if (this.atStart) {
      if (this.pendingBytes + bytes.length < BOM.length && BOM.subarray(this.pendingBytes).indexOf(bytes) === 0) {
        // Too short to tell yet: kept as the start of the line, judged with the next chunk.
        this.pieces.push(bytes);
        this.pendingBytes += bytes.length;
        return;
      }
      this.atStart = false;
      if (this.pieces.length > 0) {
        bytes = Buffer.concat([...this.pieces, bytes]);
        this.pieces.length = 0;
        this.pendingBytes = 0;
      }
      if (bytes.subarray(0, BOM.length).equals(BOM)) bytes = bytes.subarray(BOM.length);
    }
    let start = this.afterCr && bytes[0] === LF ? 1 : 0;
    this.afterCr = false;
    // Most streams never send a CR: then one native search for LF finds each line's end.
    const hasCr = bytes.indexOf(CR, start) !== -1;
    for (;;) {
      const end = hasCr ? lineEnd(bytes, start) : bytes.indexOf(LF, start);
      if (end === -1) break;
      // No line in progress (`pendingBytes` counts its pieces: checked without a look at the array).
      if (this.pendingBytes === 0) this.line(bytes, start, end, handler);
      else {
        this.pieces.push(bytes.subarray(start, end));
        const whole = Buffer.concat(this.pieces);
        this.pieces.length = 0;
        this.line(whole, 0, whole.length, handler);
      }
      this.pendingBytes = 0;
      if (bytes[end] === CR) {
        if (end + 1 === bytes.length) this.afterCr = true;
        start = bytes[end + 1] === LF ? end + 2 : end + 1;
      } else {
        start = end + 1;
      }
    }
    if (start < bytes.length) {
      this.pieces.push(bytes.subarray(start));
      this.pendingBytes += bytes.length - start;
      // Checked without waiting for the line's end, which a broken upstream may never send.
      if (this.eventBytes + this.pendingBytes > this.maxEventBytes) throw new EventTooLargeError(this.maxEventBytes);
    }
  }

  /** The line `bytes[start, end)`, without its end. */
  private line(bytes: Buffer, start: number, end: number, handler: SseHandler): void {
    if (start === end) {
      const first = this.firstData;
      const more = this.moreData;
      const event = this.event;
      this.event = undefined;
      this.firstData = undefined;
      this.moreData = undefined;
      this.eventBytes = 0;
      if (first !== undefined)
        handler.onEvent({ event, data: more === undefined ? first : [first, ...more].join("\n") });
      return;
    }
    if (bytes[start] === COLON) return; // a comment
    this.eventBytes += end - start + 1;
    if (this.eventBytes > this.maxEventBytes) throw new EventTooLargeError(this.maxEventBytes);
    // Nearly every line is `data:…`: known by its first five bytes, without the native calls (a search for
    // the colon, a compare of the name) that a line of any other field takes.
    const isData = end - start > 4 && bytes[start + 4] === COLON && startsWith(bytes, start, DATA);
    let colon = isData ? start + 4 : bytes.indexOf(COLON, start);
    if (colon === -1 || colon > end) colon = end;
    let valueStart = colon === end ? end : colon + 1;
    if (bytes[valueStart] === SPACE && valueStart < end) valueStart++;
    if (isData || isField(bytes, start, colon, DATA)) {
      const value = bytes.toString("utf8", valueStart, end);
      if (this.firstData === undefined) this.firstData = value;
      else (this.moreData ??= []).push(value);
    } else if (isField(bytes, start, colon, EVENT)) this.event = bytes.toString("utf8", valueStart, end);
  }
}

const LF = 10;
const CR = 13;
const COLON = 58;
const SPACE = 32;
const BOM = Buffer.from([0xef, 0xbb, 0xbf]);
const DATA = Buffer.from("data");
const EVENT = Buffer.from("event");

function isField(bytes: Buffer, start: number, end: number, name: Buffer): boolean {
  return end - start === name.length && bytes.compare(name, 0, name.length, start, end) === 0;
}

/** Whether `bytes` holds `name` at `start`, compared byte by byte (shorter than a native call for a few bytes). */
function startsWith(bytes: Buffer, start: number, name: Buffer): boolean {
  for (let i = 0; i < name.length; i++) if (bytes[start + i] !== name[i]) return false;
  return true;
}

function lineEnd(bytes: Buffer, from: number): number {
  for (let i = from; i < bytes.length; i++) {
    const byte = bytes[i];
    if (byte === LF || byte === CR) return i;
  }
  return -1;
}

// The client of the concurrent-streams benchmark, run as its own process on the load core. It keeps
// `streams` streamed chat requests open, one per keep-alive connection, and sends the next request on a
// connection as soon as its stream ends (a closed loop). Connections are opened over `rampSeconds`, as users
// arrive, not all in one millisecond. Raw sockets and a byte scan (no SSE or JSON parsing): the client must
// stay cheaper than the servers it drives.
//
// Prints "window-start" and "window-end" (so the caller reads the server's CPU time over exactly the
// measured window) and one JSON line: chunks delivered, streams completed, time to first byte, the largest
// gap between two chunks of a stream, and errors by kind. Chunks and streams completed count in the measured
// window only; time to first byte, gaps and errors count every stream of the run, the ramp's included.
import { connect } from "node:net";
import { buildRequest } from "./http-client.mjs";

const spec = JSON.parse(process.argv[2] ?? "{}");
const request = buildRequest({ host: spec.host, port: spec.port, path: spec.path, body: spec.body });
const DATA = Buffer.from("data: ");
const ERROR_EVENT = Buffer.from('data: {"error"');
const DONE_EVENT = Buffer.from("data: [DONE]");
const CRLFCRLF = Buffer.from("\r\n\r\n");
/** The end of a chunked body: the zero-size chunk. */
const LAST_CHUNK = Buffer.from("\r\n0\r\n\r\n");
/** Bytes kept from the end of one read so that a marker split across two reads is still found. */
const KEEP = 16;

let measuring = false;
let stopping = false;
const counts = { chunks: 0, completed: 0 };
const errors = {};
const firstByteMs = [];
const maxGapMs = [];
// Errors count over the whole run, the ramp included: a reset while users arrive is still a reset.
const countError = (kind) => {
  if (!stopping) errors[kind] = (errors[kind] ?? 0) + 1;
};

function occurrences(buffer, marker, from) {
  let count = 0;
  for (let at = buffer.indexOf(marker, from); at !== -1; at = buffer.indexOf(marker, at + marker.length)) count++;
  return count;
}

/** One connection carrying one stream at a time. */
class StreamConnection {
  constructor() {
    this.socket = connect({ host: spec.host, port: spec.port, noDelay: true });
    live.add(this);
    this.socket.on("connect", () => this.send());
    this.socket.on("data", (data) => this.read(data));
    this.socket.on("error", (error) => {
      this.failure = error.code ?? error.message;
    });
    this.socket.on("close", () => {
      live.delete(this);
      if (!stopping) {
        // A connection lost mid-stream (or refused) is an error of its kind; the user reconnects.
        countError(this.failure ?? (this.inStream ? "closed mid-stream" : "closed between streams"));
        setTimeout(() => new StreamConnection(), 100);
      }
    });
  }

  send() {
    this.inStream = true;
    this.sentAt = performance.now();
    this.head = Buffer.alloc(0);
    this.status = 0;
    this.tail = Buffer.alloc(0);
    this.lastChunkAt = 0;
    this.maxGap = 0;
    this.done = false;
    this.socket.write(request);
  }

  read(data) {
    if (!this.inStream) return;
    let body = data;
    if (this.status === 0) {
      this.head = this.head.length === 0 ? data : Buffer.concat([this.head, data]);
      const end = this.head.indexOf(CRLFCRLF);
      if (end === -1) return;
      this.status = Number(this.head.toString("latin1", 9, 12));
      body = this.head.subarray(end + 4);
      this.head = Buffer.alloc(0);
      if (this.status !== 200) {
        countError(`status ${this.status}`);
        // Not a stream: start again on a fresh connection rather than parse an error body.
        this.inStream = false;
        this.socket.destroy();
        return;
      }
    }
    const now = performance.now();
    const scan = this.tail.length === 0 ? body : Buffer.concat([this.tail, body]);
    const from = this.tail.length;
    // Markers that start inside the kept tail were counted with the previous read.
    const events = occurrences(scan, DATA, 0) - occurrences(this.tail, DATA, 0);
    if (events > 0) {
      if (this.lastChunkAt === 0) {
        if (!stopping) firstByteMs.push(now - this.sentAt);
      } else if (now - this.lastChunkAt > this.maxGap) this.maxGap = now - this.lastChunkAt;
      this.lastChunkAt = now;
      if (measuring) counts.chunks += events;
      if (scan.indexOf(ERROR_EVENT, Math.max(0, from - ERROR_EVENT.length)) !== -1) countError("error event");
      if (scan.indexOf(DONE_EVENT, Math.max(0, from - DONE_EVENT.length)) !== -1) this.done = true;
    }
    this.tail = scan.subarray(Math.max(0, scan.length - KEEP));
    if (scan.indexOf(LAST_CHUNK, Math.max(0, from - LAST_CHUNK.length)) !== -1) {
      this.inStream = false;
      if (!this.done) countError("ended without [DONE]");
      if (measuring) counts.completed++;
      maxGapMs.push(this.maxGap);
      if (!stopping) this.send();
    }
  }
}

function percentile(values, p) {
  if (values.length === 0) return null;
  const sorted = Float64Array.from(values).sort();
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

const say = (line) => process.stdout.write(`${typeof line === "string" ? line : JSON.stringify(line)}\n`);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const live = new Set();
const rampMs = spec.rampSeconds * 1000;
for (let i = 0; i < spec.streams; i++) {
  new StreamConnection();
  // Spread the arrivals over the ramp, in batches of one timer turn.
  if (i % 50 === 49) await sleep((rampMs * 50) / spec.streams);
}
await sleep(spec.warmupSeconds * 1000);
say("window-start");
measuring = true;
const started = performance.now();
await sleep(spec.seconds * 1000);
measuring = false;
const seconds = (performance.now() - started) / 1000;
say("window-end");
stopping = true;
// Streams still open count with the largest gap they have had so far.
for (const connection of live)
  if (connection.inStream && connection.lastChunkAt !== 0) maxGapMs.push(connection.maxGap);
for (const connection of live) connection.socket.destroy();
say({
  streams: spec.streams,
  seconds,
  chunks: counts.chunks,
  chunksPerSecond: counts.chunks / seconds,
  completed: counts.completed,
  firstByteMs: { p50: percentile(firstByteMs, 50), p99: percentile(firstByteMs, 99) },
  maxGapMs: { p50: percentile(maxGapMs, 50), p99: percentile(maxGapMs, 99) },
  errors,
});
process.exit(0);

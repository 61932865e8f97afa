import type { Writable } from "node:stream";
import winston from "winston";
import type { LogLevel } from "../config/settings";
import { fitLine, PIPE_BUF } from "./line-limit";

/** Where winston's formats leave the finished line (triple-beam's MESSAGE, a registered symbol). */
const MESSAGE = Symbol.for("message");

/**
 * Writes each formatted line to a stream, and nothing else. winston's own Console and Stream transports
 * also schedule a `logged` event per line with setImmediate, which nothing here listens to.
 */
class LineTransport extends winston.transports.Stream {
  /** The access lines bound for the same stream (see LineBatch). */
  private readonly batch: LineBatch;

  constructor(private readonly lines: Writable) {
    super({ stream: lines });
    this.batch = batchOf(lines);
  }

  override log(info: Record<string | symbol, unknown>, next: () => void): void {
    // Access lines still waiting for their batch go first, so lines stay in the order things happened.
    this.batch.flush();
    const line = String(info[MESSAGE]);
    // A UTF-16 unit takes at most 3 bytes in UTF-8, so only long lines need counting (see LineBatch).
    this.lines.write(`${line.length * 3 < PIPE_BUF || Buffer.byteLength(line) < PIPE_BUF ? line : fitLine(line)}\n`);
    next();
  }
}

/**
 * Access lines gathered and written once per event-loop turn, never more than PIPE_BUF at once (see
 * line-limit.ts), so under WORKERS > 1 lines from two workers cannot interleave. stdout is synchronous when
 * it is a file or a pipe (on Linux), so a write per request was a write(2) per request, about 5% of the
 * gateway's CPU at load; under load many requests end in the same turn and now share one write.
 */
class LineBatch {
  private pending = "";
  private pendingBytes = 0;
  private scheduled = false;

  constructor(private readonly lines: Writable) {}

  /** `line` is one JSON object and its newline. */
  add(line: string): void {
    let bytes = Buffer.byteLength(line);
    // A line over PIPE_BUF could not be written atomically even alone: it is cut to fit (rare, so only then).
    if (bytes > PIPE_BUF) {
      line = `${fitLine(line.slice(0, -1))}\n`;
      bytes = Buffer.byteLength(line);
    }
    if (this.pendingBytes + bytes > PIPE_BUF) this.flush();
    if (this.pending === "") unflushed.add(this);
    this.pending += line;
    this.pendingBytes += bytes;
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.onTurnEnd);
    }
  }

  flush(): void {
    if (this.pending === "") return;
    const text = this.pending;
    this.pending = "";
    this.pendingBytes = 0;
    unflushed.delete(this);
    this.lines.write(text);
  }

  private readonly onTurnEnd = (): void => {
    this.scheduled = false;
    this.flush();
  };
}

/** Batches holding lines not yet written: what a process exiting mid-turn still owes its log. */
const unflushed = new Set<LineBatch>();
process.on("exit", () => {
  for (const batch of unflushed) batch.flush();
});

const batches = new WeakMap<Writable, LineBatch>();

/** One batch per destination, shared by every logger writing there, so their lines cannot overtake each other. */
function batchOf(lines: Writable): LineBatch {
  let batch = batches.get(lines);
  if (batch === undefined) batches.set(lines, (batch = new LineBatch(lines)));
  return batch;
}

/** The fields of the one line each request logs when it is over (see middleware/access-log.ts). */
export interface RequestLine {
  readonly requestId: string;
  readonly method: string;
  readonly path: string;
  readonly status: number;
  readonly backend: string | null;
  readonly stream: boolean;
  readonly durationMs: number;
  /** The gateway API key's name, with auth on. */
  readonly key?: string;
  /** The backend's target (upstream) the last call went to, when one was called. */
  readonly target?: string;
}

/** What a logger made here writes to, so that the per-request line can skip winston's pipeline. */
const destinations = new WeakMap<winston.Logger, { readonly lines: LineBatch; readonly service: string }>();

/**
 * JSON lines on stdout, one object per event, so any log shipper can index them. Tests pass their own
 * stream to read what was logged.
 */
export function createLogger(options: { level: LogLevel; service: string; stream?: Writable }): winston.Logger {
  const lines = options.stream ?? process.stdout;
  const logger = winston.createLogger({
    level: options.level,
    format: winston.format.combine(
      winston.format.timestamp(),
      winston.format.errors({ stack: true }),
      winston.format.json(),
    ),
    defaultMeta: { service: options.service },
    transports: [new LineTransport(lines)],
  });
  destinations.set(logger, { lines: batchOf(lines), service: options.service });
  return logger;
}

/**
 * A writer for the per-request line that produces exactly the line `logger.info("request", fields)` would
 * (the same keys, in the sorted order winston's json format writes them), batched per event-loop turn (see
 * LineBatch), at a fraction of the cost:
 * winston passes every line through two object-mode streams and a generic serialiser, which made the
 * access log about a tenth of the gateway's CPU per request. Loggers not made by createLogger get
 * `logger.info` itself.
 */
export function requestLineWriter(logger: winston.Logger): (line: RequestLine) => void {
  const destination = destinations.get(logger);
  if (destination === undefined)
    return ({ requestId, ...fields }) => logger.child({ requestId }).info("request", fields);
  const { lines, service } = destination;
  return (line) => {
    if (!logger.isInfoEnabled()) return;
    const entry = {
      backend: line.backend,
      durationMs: line.durationMs,
      ...(line.key === undefined ? {} : { key: line.key }),
      level: "info",
      message: "request",
      method: line.method,
      path: line.path,
      requestId: line.requestId,
      service,
      status: line.status,
      stream: line.stream,
      ...(line.target === undefined ? {} : { target: line.target }),
      timestamp: new Date().toISOString(),
    };
    lines.add(`${JSON.stringify(entry)}\n`);
  };
}

import type { Writable } from "node:stream";
import winston from "winston";
import type { LogLevel } from "../config/settings";

/** Where winston's formats leave the finished line (triple-beam's MESSAGE, a registered symbol). */
const MESSAGE = Symbol.for("message");

/**
 * Writes each formatted line to a stream, and nothing else. winston's own Console and Stream transports
 * also schedule a `logged` event per line with setImmediate, which nothing here listens to.
 */
class LineTransport extends winston.transports.Stream {
  constructor(private readonly lines: Writable) {
    super({ stream: lines });
  }

  override log(info: Record<string | symbol, unknown>, next: () => void): void {
    this.lines.write(`${String(info[MESSAGE])}\n`);
    next();
  }
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
}

/** What a logger made here writes to, so that the per-request line can skip winston's pipeline. */
const destinations = new WeakMap<winston.Logger, { readonly lines: Writable; readonly service: string }>();

/**
 * JSON lines on stdout, one object per event, so any log shipper can index them. Tests pass their own
 * stream to read what was logged.
 */
export function createLogger(options: { level: LogLevel; service: string; stream?: Writable }): winston.Logger {
  const lines = options.stream ?? process.stdout;
  const logger = winston.createLogger({
    level: options.level,
    format: winston.format.combine(winston.format.timestamp(), winston.format.errors({ stack: true }), winston.format.json()),
    defaultMeta: { service: options.service },
    transports: [new LineTransport(lines)],
  });
  destinations.set(logger, { lines, service: options.service });
  return logger;
}

/**
 * A writer for the per-request line that produces exactly the line `logger.info("request", fields)` would
 * (the same keys, in the sorted order winston's json format writes them), at a fraction of the cost:
 * winston passes every line through two object-mode streams and a generic serialiser, which made the
 * access log about a tenth of the gateway's CPU per request. Loggers not made by createLogger get
 * `logger.info` itself.
 */
export function requestLineWriter(logger: winston.Logger): (line: RequestLine) => void {
  const destination = destinations.get(logger);
  if (destination === undefined) return ({ requestId, ...fields }) => logger.child({ requestId }).info("request", fields);
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
      timestamp: new Date().toISOString(),
    };
    lines.write(`${JSON.stringify(entry)}\n`);
  };
}

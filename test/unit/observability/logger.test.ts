import { PassThrough } from "node:stream";
import winston from "winston";
import { createLogger, type RequestLine, requestLineWriter } from "../../../gateway/src/observability/logger";

function capture(level: "info" | "warn" = "info") {
  const stream = new PassThrough();
  let text = "";
  stream.on("data", (chunk: Buffer) => (text += chunk.toString("utf8")));
  const logger = createLogger({ level, service: "gateway", stream });
  return { logger, lines: () => text.split("\n").filter((line) => line !== "") };
}

const line: RequestLine = { requestId: "req-1", method: "POST", path: "/v1/chat/completions", status: 200, backend: "local", stream: false, durationMs: 1.25 };

/** A line with its timestamp replaced, so two lines written a moment apart compare equal. */
const withoutTime = (text: string) => text.replace(/"timestamp":"[^"]+"/, '"timestamp":"T"');

describe("createLogger", () => {
  it("writes one JSON object per line with level, message, service and timestamp", () => {
    const { logger, lines } = capture();
    logger.warn("something", { code: "x" });
    expect(lines()).toHaveLength(1);
    expect(JSON.parse(lines()[0] ?? "")).toEqual({ level: "warn", message: "something", code: "x", service: "gateway", timestamp: expect.any(String) });
  });

  it("writes an error's stack", () => {
    const { logger, lines } = capture();
    logger.error(new Error("boom"));
    expect(JSON.parse(lines()[0] ?? "")).toMatchObject({ level: "error", message: "boom", stack: expect.stringContaining("Error: boom") });
  });
});

describe("requestLineWriter", () => {
  it("writes exactly the line logger.info would, keys in the same order", () => {
    const { logger, lines } = capture();
    const { requestId, ...fields } = line;
    logger.child({ requestId }).info("request", fields);
    requestLineWriter(logger)(line);
    const [viaWinston, direct] = lines();
    expect(withoutTime(direct ?? "")).toBe(withoutTime(viaWinston ?? ""));
  });

  it("escapes what it writes as JSON", () => {
    const { logger, lines } = capture();
    requestLineWriter(logger)({ ...line, path: '/a"b\\c\n' });
    expect(JSON.parse(lines()[0] ?? "")).toMatchObject({ path: '/a"b\\c\n' });
  });

  it("writes nothing when the level is above info", () => {
    const { logger, lines } = capture("warn");
    requestLineWriter(logger)(line);
    expect(lines()).toEqual([]);
  });

  it("falls back to logger.info for a logger createLogger did not make", () => {
    const stream = new PassThrough();
    let text = "";
    stream.on("data", (chunk: Buffer) => (text += chunk.toString("utf8")));
    const other = winston.createLogger({ format: winston.format.json(), transports: [new winston.transports.Stream({ stream })] });
    requestLineWriter(other)(line);
    expect(JSON.parse(text.trim())).toMatchObject({ message: "request", requestId: "req-1", status: 200 });
  });
});

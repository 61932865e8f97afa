import { PassThrough, Writable } from "node:stream";
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

/** A request-line writer whose every write(2)-to-be is kept separately, to see how lines are batched. */
function countWrites() {
  const writes: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      writes.push(chunk.toString("utf8"));
      done();
    },
  });
  return { writes, write: requestLineWriter(createLogger({ level: "info", service: "gateway", stream })) };
}

/** Access lines are written at the end of the event-loop turn they were logged in. */
const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

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
  it("writes exactly the line logger.info would, keys in the same order", async () => {
    const { logger, lines } = capture();
    const { requestId, ...fields } = line;
    logger.child({ requestId }).info("request", fields);
    requestLineWriter(logger)(line);
    await nextTurn();
    const [viaWinston, direct] = lines();
    expect(withoutTime(direct ?? "")).toBe(withoutTime(viaWinston ?? ""));
  });

  it("escapes what it writes as JSON", async () => {
    const { logger, lines } = capture();
    requestLineWriter(logger)({ ...line, path: '/a"b\\c\n' });
    await nextTurn();
    expect(JSON.parse(lines()[0] ?? "")).toMatchObject({ path: '/a"b\\c\n' });
  });

  it("writes nothing when the level is above info", async () => {
    const { logger, lines } = capture("warn");
    requestLineWriter(logger)(line);
    await nextTurn();
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

  it("writes the lines of one event-loop turn in one write, at the end of that turn", async () => {
    const { writes, write } = countWrites();
    write({ ...line, requestId: "a" });
    write({ ...line, requestId: "b" });
    write({ ...line, requestId: "c" });
    expect(writes).toEqual([]);
    await nextTurn();
    expect(writes).toHaveLength(1);
    expect((writes[0] ?? "").split("\n").filter((text) => text !== "").map((text) => (JSON.parse(text) as { requestId: string }).requestId)).toEqual(["a", "b", "c"]);
  });

  it("never writes more than PIPE_BUF (4096 bytes) at once, so workers sharing a pipe cannot interleave lines", async () => {
    const { writes, write } = countWrites();
    // About 1.2 KB a line, some of it in 3-byte UTF-8: three lines fit in 4096 bytes, four do not.
    const longPath = `/${"é€".repeat(200)}${"x".repeat(400)}`;
    for (let i = 0; i < 40; i++) write({ ...line, requestId: String(i), path: longPath });
    await nextTurn();
    expect(writes.length).toBeGreaterThan(1);
    for (const text of writes) expect(Buffer.byteLength(text)).toBeLessThanOrEqual(4096);
    const ids = writes.join("").split("\n").filter((text) => text !== "").map((text) => (JSON.parse(text) as { requestId: string }).requestId);
    expect(ids).toEqual(Array.from({ length: 40 }, (_, i) => String(i)));
  });

  it("keeps the order of events: a line logged after pending access lines comes after them", () => {
    const { logger, lines } = capture();
    requestLineWriter(logger)(line);
    logger.warn("after the request");
    expect(lines().map((text) => (JSON.parse(text) as { message: string }).message)).toEqual(["request", "after the request"]);
  });
});

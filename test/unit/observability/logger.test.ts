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

const line: RequestLine = {
  requestId: "req-1",
  method: "POST",
  path: "/v1/chat/completions",
  status: 200,
  backend: "local",
  stream: false,
  durationMs: 1.25,
};

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
    expect(JSON.parse(lines()[0] ?? "")).toEqual({
      level: "warn",
      message: "something",
      code: "x",
      service: "gateway",
      timestamp: expect.any(String),
    });
  });

  it("writes an error's stack", () => {
    const { logger, lines } = capture();
    logger.error(new Error("boom"));
    expect(JSON.parse(lines()[0] ?? "")).toMatchObject({
      level: "error",
      message: "boom",
      stack: expect.stringContaining("Error: boom"),
    });
  });
});

describe("requestLineWriter", () => {
  it("writes exactly the line logger.info would, keys in the same order", async () => {
    for (const each of [line, { ...line, key: "team-a", target: "10.0.1.5:8000" }]) {
      const { logger, lines } = capture();
      const { requestId, ...fields } = each;
      logger.child({ requestId }).info("request", fields);
      requestLineWriter(logger)(each);
      await nextTurn();
      const [viaWinston, direct] = lines();
      expect(withoutTime(direct ?? "")).toBe(withoutTime(viaWinston ?? ""));
    }
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
    const other = winston.createLogger({
      format: winston.format.json(),
      transports: [new winston.transports.Stream({ stream })],
    });
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
    expect(
      (writes[0] ?? "")
        .split("\n")
        .filter((text) => text !== "")
        .map((text) => (JSON.parse(text) as { requestId: string }).requestId),
    ).toEqual(["a", "b", "c"]);
  });

  it("never writes more than PIPE_BUF (4096 bytes) at once, so workers sharing a pipe cannot interleave lines", async () => {
    const { writes, write } = countWrites();
    // About 1.2 KB a line, some of it in 3-byte UTF-8: three lines fit in 4096 bytes, four do not.
    const longPath = `/${"é€".repeat(200)}${"x".repeat(400)}`;
    for (let i = 0; i < 40; i++) write({ ...line, requestId: String(i), path: longPath });
    await nextTurn();
    expect(writes.length).toBeGreaterThan(1);
    for (const text of writes) expect(Buffer.byteLength(text)).toBeLessThanOrEqual(4096);
    const ids = writes
      .join("")
      .split("\n")
      .filter((text) => text !== "")
      .map((text) => (JSON.parse(text) as { requestId: string }).requestId);
    expect(ids).toEqual(Array.from({ length: 40 }, (_, i) => String(i)));
  });

  it("keeps the order of events: a line logged after pending access lines comes after them", () => {
    const { logger, lines } = capture();
    requestLineWriter(logger)(line);
    logger.warn("after the request");
    expect(lines().map((text) => (JSON.parse(text) as { message: string }).message)).toEqual([
      "request",
      "after the request",
    ]);
  });
});

describe("lines longer than PIPE_BUF", () => {
  /** Every line, checked to be at most 4096 bytes with its newline and parsed. */
  function parsedLines(text: string): Record<string, unknown>[] {
    const lines = text.split("\n").filter((one) => one !== "");
    for (const one of lines) expect(Buffer.byteLength(`${one}\n`)).toBeLessThanOrEqual(4096);
    return lines.map((one) => JSON.parse(one) as Record<string, unknown>);
  }

  it("cuts an access line's long path, marked, keeping every other field", async () => {
    const { writes, write } = countWrites();
    write({ ...line, requestId: "long", path: `/v1/${"p".repeat(14000)}` });
    write({ ...line, requestId: "short" });
    await nextTurn();
    for (const text of writes) expect(Buffer.byteLength(text)).toBeLessThanOrEqual(4096);
    const [cut, short] = parsedLines(writes.join(""));
    const { path, ...rest } = cut ?? {};
    expect(String(path)).toMatch(/^\/v1\/p+…$/);
    // As much of the path as fits: the line is within a few bytes of the limit.
    expect(Buffer.byteLength(`${JSON.stringify(cut)}\n`)).toBeGreaterThan(4090);
    expect(rest).toEqual({
      backend: "local",
      durationMs: 1.25,
      level: "info",
      message: "request",
      method: "POST",
      requestId: "long",
      service: "gateway",
      status: 200,
      stream: false,
      timestamp: expect.any(String),
    });
    expect(short).toMatchObject({ requestId: "short", path: "/v1/chat/completions" });
  });

  it.each([
    ["quotes and backslashes (2 bytes each in JSON)", '"\\'.repeat(3000)],
    ["control characters (6 bytes each in JSON)", "\u0001\u001f".repeat(2000)],
    ["multi-byte UTF-8 and surrogate pairs", "é€😀".repeat(1000)],
  ])("counts bytes as written: a path of %s", async (_what, path) => {
    const { writes, write } = countWrites();
    write({ ...line, path: `/${path}` });
    await nextTurn();
    expect(writes).toHaveLength(1);
    const [parsed] = parsedLines(writes[0] ?? "");
    expect(String(parsed?.path).endsWith("…")).toBe(true);
    expect(`/${path}`.startsWith(String(parsed?.path).slice(0, -1))).toBe(true);
    expect(parsed).toMatchObject({ requestId: "req-1", status: 200, backend: "local" });
  });

  it("cuts a winston line's longest strings, such as an error's long message and stack, to a common length", () => {
    const { logger, lines } = capture();
    const said = `upstream said: ${"x".repeat(6000)}`;
    logger.error(said, {
      stack: new Error(said).stack,
      backend: "remote",
      detail: "y".repeat(1500),
      hint: "h".repeat(500),
    });
    const [parsed] = parsedLines(lines().join("\n"));
    expect(parsed).toMatchObject({
      level: "error",
      backend: "remote",
      service: "gateway",
      timestamp: expect.any(String),
    });
    expect(String(parsed?.message)).toMatch(/^upstream said: x+…$/);
    expect(String(parsed?.stack)).toMatch(/^Error: upstream said: x+…$/);
    expect(String(parsed?.detail)).toMatch(/^y+…$/);
    expect(String(parsed?.message).length).toBe(String(parsed?.stack).length);
    // Shorter strings are cut only if the longer ones cannot make room.
    expect(parsed?.hint).toBe("h".repeat(500));
  });

  it("cuts strings nested in a line's fields", () => {
    const { logger, lines } = capture();
    logger.warn("nested", { upstream: { body: ["z".repeat(9000)] } });
    const [parsed] = parsedLines(lines().join("\n"));
    expect(parsed).toMatchObject({
      level: "warn",
      message: "nested",
      upstream: { body: [expect.stringMatching(/^z+…$/)] },
    });
  });

  it("keeps level, message and timestamp when cutting strings cannot make a line fit", () => {
    const { logger, lines } = capture();
    const many = Object.fromEntries(Array.from({ length: 1000 }, (_, i) => [`field${i}`, i]));
    logger.warn("too many fields", many);
    const [parsed] = parsedLines(lines().join("\n"));
    expect(parsed).toEqual({
      truncated: true,
      level: "warn",
      message: "too many fields",
      service: "gateway",
      timestamp: expect.any(String),
    });
  });

  it("leaves a line of exactly 4096 bytes alone", async () => {
    const { writes, write } = countWrites();
    const base = Buffer.byteLength(
      `${JSON.stringify({ ...line, path: "", timestamp: new Date().toISOString(), level: "info", message: "request", service: "gateway" })}\n`,
    );
    const path = "/".repeat(4096 - base);
    write({ ...line, path });
    await nextTurn();
    expect(Buffer.byteLength(writes[0] ?? "")).toBe(4096);
    expect(JSON.parse(writes[0] ?? "")).toMatchObject({ path });
  });
});

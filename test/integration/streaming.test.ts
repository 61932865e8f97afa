import { createServer } from "node:http";
import { type AddressInfo, connect, type Socket } from "node:net";
import OpenAI from "openai";
import { eventually } from "../support/eventually";
import { total } from "../support/exposition";
import { expectOneInterruptedStream, scrape, scrapeUntil } from "../support/metrics";
import {
  type RunningGateway,
  type RunningMock,
  startGateway,
  startMock,
  twoBackendConfig,
  userMessage,
} from "../support/servers";

let mock: RunningMock;
let gateway: RunningGateway;

beforeAll(async () => {
  mock = await startMock();
  // The breaker is off: the integrity tests break one stream after another, and each must reach the
  // upstream (resilience.test.ts covers the breaker).
  gateway = await startGateway(twoBackendConfig(mock.url, "timeout: 0.5\ncircuit_breaker: false"));
});

afterAll(async () => {
  await gateway.close();
  await mock.close();
});

function client(url = gateway.url): OpenAI {
  return new OpenAI({ baseURL: `${url}/v1`, apiKey: "unused", maxRetries: 0 });
}

/** Body fields the SDK does not know (mock-remote's knobs) pass through it as extra params. */
function knobs(mock: Record<string, unknown>): object {
  return { mock };
}

async function streamText(
  model: string,
  extra: object = {},
  url = gateway.url,
): Promise<{ text: string; chunks: OpenAI.ChatCompletionChunk[] }> {
  const stream = await client(url).chat.completions.create({
    model,
    stream: true,
    messages: userMessage("Hello world"),
    ...extra,
  });
  const chunks: OpenAI.ChatCompletionChunk[] = [];
  for await (const chunk of stream) chunks.push(chunk);
  return { text: chunks.map((chunk) => chunk.choices[0]?.delta.content ?? "").join(""), chunks };
}

/** What the SDK raised while reading the stream, or undefined if it ended as a success. */
async function streamError(model: string, extra: object): Promise<unknown> {
  try {
    await streamText(model, extra);
    return undefined;
  } catch (error) {
    return error;
  }
}

describe("streaming through the official openai SDK", () => {
  it("streams the echo backend word by word", async () => {
    const { text, chunks } = await streamText("local");
    expect(text).toBe("Echo: Hello world");
    expect(chunks.length).toBeGreaterThanOrEqual(4);
    expect(new Set(chunks.map((chunk) => chunk.id)).size).toBe(1);
    expect(new Set(chunks.map((chunk) => chunk.created)).size).toBe(1);
    expect(chunks[0]?.choices[0]?.delta.role).toBe("assistant");
    expect(chunks[chunks.length - 1]?.choices[0]?.finish_reason).toBe("stop");
    expect(chunks.every((chunk) => chunk.object === "chat.completion.chunk" && chunk.model === "local")).toBe(true);
  });

  it("relays mock-remote's stream through the http backend", async () => {
    const { text, chunks } = await streamText("remote");
    expect(text).toBe("Remote: Hello world");
    expect(chunks.every((chunk) => (chunk as unknown as { backend: string }).backend === "remote")).toBe(true);
    expect(chunks[chunks.length - 1]?.choices[0]?.finish_reason).toBe("stop");
  });

  // local: the gateway's estimate, a token per word. remote: mock-remote's own count, a token per started
  // four characters ("Hello world" 11, "Remote: Hello world" 19), which the gateway must pass through.
  it.each([
    ["local", { prompt_tokens: 2, completion_tokens: 3, total_tokens: 5 }],
    ["remote", { prompt_tokens: 3, completion_tokens: 5, total_tokens: 8 }],
  ])("with include_usage, gives %s's usage once, in a last chunk without choices", async (model, usage) => {
    const { chunks } = await streamText(model, { stream_options: { include_usage: true } });
    const withUsage = chunks.filter((chunk) => chunk.usage !== null && chunk.usage !== undefined);
    expect(withUsage).toHaveLength(1);
    expect(chunks[chunks.length - 1]).toBe(withUsage[0]);
    expect(withUsage[0]?.choices).toEqual([]);
    expect(withUsage[0]?.usage).toEqual(usage);
    expect(chunks.slice(0, -1).every((chunk) => chunk.usage === null)).toBe(true);
  });

  it("counts streamed tokens even when the client did not ask for usage", async () => {
    const before = total(await scrape(gateway.url), "gateway_tokens_total", { backend: "remote", type: "completion" });
    await streamText("remote");
    const after = total(
      await scrapeUntil(
        gateway.url,
        (s) => total(s, "gateway_tokens_total", { backend: "remote", type: "completion" }) > before,
      ),
      "gateway_tokens_total",
      {
        backend: "remote",
        type: "completion",
      },
    );
    // mock-remote's count for "Remote: Hello world" (the gateway's estimate would be 3).
    expect(after - before).toBe(5);
    // mock-remote was asked for usage, though the client was not.
    const last = mock.seen[mock.seen.length - 1];
    expect((last?.body as { stream_options?: unknown }).stream_options).toEqual({ include_usage: true });
  });

  it("records time to first token per backend", async () => {
    const before = total(await scrape(gateway.url), "gateway_time_to_first_token_seconds_count", { backend: "local" });
    await streamText("local");
    expect(total(await scrape(gateway.url), "gateway_time_to_first_token_seconds_count", { backend: "local" })).toBe(
      before + 1,
    );
  });

  it("flushes each event as it is made instead of buffering the answer", async () => {
    const response = await fetch(`${gateway.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        model: "remote",
        stream: true,
        messages: userMessage("a b c d"),
        mock: { chunk_delay_ms: 150 },
      }),
    });
    expect(response.headers.get("content-type")).toMatch(/^text\/event-stream/);
    const reader = (response.body as ReadableStream<Uint8Array>).getReader();
    const started = performance.now();
    const first = await reader.read();
    const firstAt = performance.now() - started;
    let rest = "";
    for (let i = 0; i < 100; i++) {
      const next = await reader.read();
      if (next.done) break;
      rest += new TextDecoder().decode(next.value);
    }
    const endAt = performance.now() - started;
    expect(new TextDecoder().decode(first.value)).toContain('"role":"assistant"');
    expect(rest.trimEnd().endsWith("data: [DONE]")).toBe(true);
    // Four 150 ms gaps separate the chunks: a buffering gateway would deliver everything at the end.
    expect(endAt - firstAt).toBeGreaterThan(400);
  });

  it("streams through a chain of two gateways", async () => {
    const front = await startGateway(twoBackendConfig(gateway.url, "model: remote"));
    try {
      const { text } = await streamText("remote", {}, front.url);
      expect(text).toBe("Remote: Hello world");
    } finally {
      await front.close();
    }
  });
});

/** Once what was read so far makes `after` hold, `send` is written on the same connection (once). */
interface FollowUp {
  after(bytes: Buffer): boolean;
  send: string;
}

/** What a raw socket reads until the server closes it or `done` holds for the bytes so far. */
async function readRaw(
  request: string,
  {
    url = gateway.url,
    done = () => false,
    follow,
  }: { url?: string; done?: (bytes: Buffer) => boolean; follow?: FollowUp } = {},
): Promise<Buffer> {
  const socket = connect({ host: "127.0.0.1", port: Number(new URL(url).port) });
  const parts: Buffer[] = [];
  let followed = false;
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once("error", reject);
      socket.once("close", () => resolve());
      socket.on("data", (data: Buffer) => {
        parts.push(data);
        const bytes = Buffer.concat(parts);
        if (follow !== undefined && !followed && follow.after(bytes)) {
          followed = true;
          socket.write(follow.send);
        }
        if (done(bytes)) resolve();
      });
      socket.write(request);
    });
  } finally {
    socket.destroy();
  }
  return Buffer.concat(parts);
}

function streamRequest(model: string, content: string, version = "1.1", extra: object = {}): string {
  const body = JSON.stringify({ model, stream: true, messages: userMessage(content), ...extra });
  return `POST /v1/chat/completions HTTP/${version}\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
}

/**
 * The HTTP/1.1 responses in `bytes`, one after the other: each one's head and its chunked body decoded,
 * checking every chunk's size line against the bytes that follow it (a size counted in characters, not
 * bytes, or a frame written twice, breaks the decoding of everything after it).
 */
function chunkedResponses(bytes: Buffer): { head: string; body: string; chunks: number }[] {
  const responses: { head: string; body: string; chunks: number }[] = [];
  let at = 0;
  while (at < bytes.length) {
    const headEnd = bytes.indexOf("\r\n\r\n", at);
    if (headEnd === -1) throw new Error(`no response head at byte ${at}`);
    const head = bytes.toString("latin1", at, headEnd);
    expect(head.toLowerCase()).toContain("transfer-encoding: chunked");
    at = headEnd + 4;
    const body: Buffer[] = [];
    let chunks = 0;
    for (;;) {
      const sizeEnd = bytes.indexOf("\r\n", at);
      const sizeLine = bytes.toString("latin1", at, sizeEnd);
      if (!/^[0-9a-f]+$/.test(sizeLine)) throw new Error(`not a chunk size at byte ${at}: ${JSON.stringify(sizeLine)}`);
      const size = parseInt(sizeLine, 16);
      at = sizeEnd + 2;
      if (size === 0) {
        expect(bytes.toString("latin1", at, at + 2)).toBe("\r\n");
        at += 2;
        break;
      }
      body.push(bytes.subarray(at, at + size));
      chunks++;
      expect(bytes.toString("latin1", at + size, at + size + 2)).toBe("\r\n");
      at += size + 2;
    }
    responses.push({ head, body: Buffer.concat(body).toString("utf8"), chunks });
  }
  return responses;
}

/** The text of a chat stream's `data:` events, joined; throws on any event that is not JSON or [DONE]. */
function streamedText(body: string): string {
  const events = body.split("\n\n").filter((event) => event !== "");
  expect(events[events.length - 1]).toBe("data: [DONE]");
  return events
    .slice(0, -1)
    .map(
      (event) =>
        (JSON.parse(event.replace(/^data: /, "")) as OpenAI.ChatCompletionChunk).choices[0]?.delta.content ?? "",
    )
    .join("");
}

describe("the stream on the wire", () => {
  const ENDS = Buffer.from("0\r\n\r\n");
  const NOT_HTTP = "THIS IS NOT HTTP\r\n\r\n";
  const bothEnded = (bytes: Buffer) => bytes.indexOf(ENDS, bytes.indexOf(ENDS) + 1) !== -1;

  it("frames each event as one HTTP/1.1 chunk of its size in bytes, pipelined requests answered in order", async () => {
    // Multi-byte characters: a chunk's size is its UTF-8 length. The second request arrives while the first
    // streams, so its answer waits for the connection (its events are queued by Node, not written out of turn).
    const words = "héllo wörld 你好 ünïcode";
    const bytes = await readRaw(streamRequest("local", words) + streamRequest("remote", "second answer"), {
      done: bothEnded,
    });
    const [first, second, ...rest] = chunkedResponses(bytes);
    expect(rest).toHaveLength(0);
    expect(first?.head).toMatch(/^HTTP\/1\.1 200/);
    expect(streamedText(first?.body ?? "")).toBe(`Echo: ${words}`);
    expect(first?.chunks).toBeGreaterThan(3);
    expect(second?.head).toMatch(/^HTTP\/1\.1 200/);
    expect(streamedText(second?.body ?? "")).toBe("Remote: second answer");
  });

  it("never writes an error answer into a stream: bytes that are not HTTP mid-stream close the connection", async () => {
    // A gateway of its own: the stream it cuts counts as a 499, which the disconnect test counts exactly.
    const own = await startGateway(twoBackendConfig(mock.url));
    let bytes: Buffer;
    try {
      bytes = await readRaw(streamRequest("remote", "a b c d e f", "1.1", { mock: { chunk_delay_ms: 100 } }), {
        url: own.url,
        // The first event is out and the rest is on its way: the stream is mid-answer.
        follow: { after: (read) => read.includes('"role":"assistant"'), send: NOT_HTTP },
      });
    } finally {
      await own.close();
    }
    const text = bytes.toString("latin1");
    expect(text.startsWith("HTTP/1.1 200")).toBe(true);
    expect(text).toContain('"role":"assistant"');
    expect(text).not.toContain("HTTP/1.1 400");
  });

  it("answers bytes that are not HTTP with a 400 once the stream before them has ended", async () => {
    const bytes = await readRaw(streamRequest("local", "all done"), {
      follow: { after: (read) => read.includes(ENDS), send: NOT_HTTP },
    });
    const second = bytes.indexOf("HTTP/1.1 400");
    expect(second).toBeGreaterThan(0);
    const [stream] = chunkedResponses(bytes.subarray(0, second));
    expect(streamedText(stream?.body ?? "")).toBe("Echo: all done");
    expect(bytes.toString("latin1", second)).toContain('"code":"malformed_request"');
  });

  it("writes the events of one upstream read to the client together, with the end of the answer", async () => {
    // An upstream that sends its whole answer at once: 40 content chunks, the finish, usage and [DONE].
    const chunk = (body: object) => `data: ${JSON.stringify(body)}\n\n`;
    const answer =
      Array.from({ length: 40 }, (_, index) =>
        chunk({ choices: [{ index: 0, delta: { content: `w${index} ` }, finish_reason: null }] }),
      ).join("") +
      chunk({ choices: [{ index: 0, delta: {}, finish_reason: "stop" }] }) +
      chunk({ choices: [], usage: { prompt_tokens: 1, completion_tokens: 40, total_tokens: 41 } }) +
      "data: [DONE]\n\n";
    const upstream = createServer((req, res) => {
      req.resume();
      req.on("end", () => {
        res.writeHead(200, { "content-type": "text/event-stream" });
        res.end(answer);
      });
    });
    await new Promise<void>((resolve) => upstream.listen(0, "127.0.0.1", resolve));
    const upstreamUrl = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
    const own = await startGateway(
      `default_backend: at-once\nbackends:\n  - name: at-once\n    type: http\n    url: ${upstreamUrl}\n`,
    );
    // Every write the gateway makes to its client's socket (Node's own response writes included).
    let writes = 0;
    own.server.on("connection", (socket: Socket) => {
      const write = socket.write.bind(socket) as (...args: unknown[]) => boolean;
      socket.write = (...args: unknown[]) => {
        writes++;
        return write(...args);
      };
    });
    let bytes: Buffer;
    try {
      bytes = await readRaw(streamRequest("at-once", "Hi", "1.1", { stream_options: { include_usage: true } }), {
        url: own.url,
        done: (read) => read.includes(ENDS),
      });
    } finally {
      await own.close();
      await new Promise((resolve) => upstream.close(resolve));
    }
    const [response] = chunkedResponses(bytes);
    const events = (response?.body ?? "").split("\n\n").filter((event) => event !== "");
    expect(events).toHaveLength(43);
    expect(streamedText(response?.body ?? "")).toBe(Array.from({ length: 40 }, (_, index) => `w${index} `).join(""));
    // One write per event would be 43 and more; the head and the first event take a few of Node's own.
    expect(writes).toBeLessThan(15);
  });

  it("sends an HTTP/1.0 client the events unframed and closes the connection at the end", async () => {
    const bytes = await readRaw(streamRequest("local", "one two thrée", "1.0"));
    const text = bytes.toString("utf8");
    const headEnd = text.indexOf("\r\n\r\n");
    expect(text.slice(0, headEnd).toLowerCase()).not.toContain("transfer-encoding");
    expect(streamedText(text.slice(headEnd + 4))).toBe("Echo: one two thrée");
  });
});

describe("stream integrity: a broken stream never looks like a success", () => {
  it.each([
    ["a reset before the first byte", { fault: "reset" }, 502],
    ["an upstream 500", { status: 500 }, 502],
    ["an upstream that never starts", { fault: "hang" }, 504],
  ])("%s is an ordinary HTTP error", async (_what, mockKnobs, status) => {
    const error = await streamError("remote", knobs(mockKnobs));
    expect(error).toBeInstanceOf(OpenAI.APIError);
    expect((error as InstanceType<typeof OpenAI.APIError>).status).toBe(status);
  });

  it.each([
    ["a connection cut after 2 chunks", { fault: "reset", after: 2 }, "upstream_stream_error", 502],
    ["a malformed event", { fault: "malformed", after: 1 }, "upstream_invalid_response", 502],
    ["an event nested a million levels deep", { fault: "deep", after: 1 }, "upstream_invalid_response", 502],
    ["a stall past the backend's timeout", { fault: "hang", after: 1 }, "upstream_timeout", 504],
  ])("%s raises an error in the SDK and counts as failed", async (_what, mockKnobs, code, status) => {
    const before = await scrape(gateway.url);
    const error = await streamError("remote", knobs(mockKnobs));
    expect(error).toBeInstanceOf(OpenAI.APIError);
    expect((error as InstanceType<typeof OpenAI.APIError>).code).toBe(code);
    await expectOneInterruptedStream(gateway.url, before, { backend: "remote", code: String(status), stream: "true" });
  });

  it("sends the error as a data event and then [DONE]", async () => {
    const response = await fetch(`${gateway.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        model: "remote",
        stream: true,
        messages: userMessage("Hello world"),
        mock: { fault: "reset", after: 1 },
      }),
    });
    expect(response.status).toBe(200);
    const events = (await response.text()).split("\n\n").filter((event) => event !== "");
    expect(events[events.length - 1]).toBe("data: [DONE]");
    const error = JSON.parse((events[events.length - 2] ?? "").replace(/^data: /, "")) as {
      error: Record<string, unknown>;
    };
    expect(error).toEqual({
      error: {
        message: expect.stringContaining("Backend 'remote'"),
        type: "upstream_error",
        param: null,
        code: "upstream_stream_error",
      },
    });
  });
});

describe("max_event_bytes", () => {
  it("fails a stream in-band when one event is larger than the backend's max_event_bytes", async () => {
    const small = await startGateway(twoBackendConfig(mock.url, "max_event_bytes: 1024\ncircuit_breaker: false"));
    try {
      // One word of 2000 characters: mock-remote streams it as one event of about 2 KB.
      const response = await fetch(`${small.url}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: "remote", stream: true, messages: userMessage("y".repeat(2000)) }),
      });
      expect(response.status).toBe(200);
      const events = (await response.text()).split("\n\n").filter((event) => event !== "");
      expect(events[events.length - 1]).toBe("data: [DONE]");
      const error = JSON.parse((events[events.length - 2] ?? "").replace(/^data: /, "")) as {
        error: Record<string, unknown>;
      };
      expect(error.error).toMatchObject({
        code: "upstream_invalid_response",
        message: expect.stringContaining("larger than 1024 bytes"),
      });
    } finally {
      await small.close();
    }
  });
});

describe("client disconnect", () => {
  it("aborts the upstream request at once and counts the request as cancelled", async () => {
    const before = mock.seen.length;
    const controller = new AbortController();
    const stream = await client().chat.completions.create(
      {
        model: "remote",
        stream: true,
        messages: userMessage("a b c d e f g h"),
        ...knobs({ chunks: 200, chunk_delay_ms: 50 }),
      },
      { signal: controller.signal },
    );
    let received = 0;
    try {
      for await (const _chunk of stream) {
        received++;
        if (received === 3) controller.abort();
      }
    } catch {
      // the SDK reports the abort; what matters is what the upstream saw
    }
    const abortedAt = Date.now();
    const upstream = mock.seen.slice(before).find((request) => request.path === "/v1/chat/completions");
    for (let i = 0; i < 100 && upstream?.closedEarlyAt === undefined; i++)
      await new Promise((resolve) => setTimeout(resolve, 10));
    expect(upstream?.closedEarlyAt).toBeDefined();
    // 200 chunks at 50 ms would take 10 s: the upstream connection closed within a short bound instead.
    expect((upstream?.closedEarlyAt ?? Infinity) - abortedAt).toBeLessThan(1000);
    const samples = await scrapeUntil(
      gateway.url,
      (s) => total(s, "gateway_requests_total", { backend: "remote", code: "499", stream: "true" }) >= 1,
    );
    expect(total(samples, "gateway_requests_total", { backend: "remote", code: "499", stream: "true" })).toBe(1);
    expect(total(samples, "gateway_in_flight_requests", { backend: "remote" })).toBe(0);
  });
});

describe("a client that reads slowly", () => {
  it("holds the upstream back instead of the gateway buffering its flood, and still gets every chunk", async () => {
    const event = `data: ${JSON.stringify({ choices: [{ index: 0, delta: { content: "x".repeat(1000) }, finish_reason: null }] })}\n\n`;
    const events = 100_000; // about 110 MB in all
    let written = 0;
    const upstream = createServer((req, res) => {
      req.resume();
      req.on("end", () => {
        res.writeHead(200, { "content-type": "text/event-stream" });
        let sent = 0;
        const pump = () => {
          while (sent < events && !res.destroyed) {
            sent++;
            written += event.length;
            if (!res.write(event)) {
              res.once("drain", pump);
              return;
            }
          }
          if (sent === events) res.end("data: [DONE]\n\n");
        };
        pump();
      });
    });
    await new Promise<void>((resolve) => upstream.listen(0, "127.0.0.1", resolve));
    const upstreamUrl = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
    const flooded = await startGateway(
      `default_backend: flood\nbackends:\n  - name: flood\n    type: http\n    url: ${upstreamUrl}\n    timeout: 30\n`,
    );
    const socket = connect({ host: "127.0.0.1", port: Number(new URL(flooded.url).port) });
    try {
      await new Promise<void>((resolve) => socket.once("connect", resolve));
      const body = JSON.stringify({ model: "flood", stream: true, messages: userMessage("Hi") });
      socket.pause();
      socket.write(
        `POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
      );
      // Not reading for a while: what the upstream got to send is what the sockets' buffers and the
      // gateway's bounded queue hold, not the whole answer.
      await new Promise((resolve) => setTimeout(resolve, 1500));
      expect(written).toBeLessThan((events * event.length) / 2);
      let received = 0;
      let tail = "";
      let chunks = 0;
      const MARK = '"content":"xxxxxxxxxx';
      socket.on("data", (data: Buffer) => {
        received += data.length;
        const text = tail + data.toString("latin1");
        // Markers wholly inside the kept tail were counted with the read before.
        chunks += text.split(MARK).length - tail.split(MARK).length;
        tail = text.slice(-40);
      });
      socket.resume();
      await eventually(
        "the whole stream read",
        () => Promise.resolve(tail),
        (text) => text.includes("data: [DONE]"),
        { timeoutMs: 60_000, intervalMs: 100 },
      );
      expect(chunks).toBe(events);
      expect(received).toBeGreaterThan(events * event.length);
    } finally {
      socket.destroy();
      await flooded.close();
      await new Promise<void>((resolve) => {
        upstream.close(() => resolve());
        upstream.closeAllConnections();
      });
    }
  }, 90_000);
});

import type { ServerResponse } from "node:http";
import type { Socket } from "node:net";
import type { Backend, BackendCall, StreamEvent } from "../../../../gateway/src/backends/backend";
import { Pool } from "undici";
import { httpBackendFactory } from "../../../../gateway/src/backends/http/factory";
import { StreamExchange } from "../../../../gateway/src/backends/http/stream-exchange";
import { AnswerAllowance } from "../../../../gateway/src/backends/http/whole-answer";
import { ResponseBudget } from "../../../../gateway/src/backends/response-budget";
import { ConfigFields } from "../../../../gateway/src/config/fields";
import { UpstreamTimeoutError } from "../../../../gateway/src/errors";
import { createLogger } from "../../../../gateway/src/observability/logger";
import { eventually } from "../../../support/eventually";
import { closeAfterTest, closeOpened, failure, upstream } from "./upstream";

afterEach(closeOpened);

const logger = createLogger({ level: "error", service: "test" });

function backendOn(url: string, fields: Record<string, unknown> = {}): Backend {
  const options = httpBackendFactory.parseOptions(ConfigFields.from({ url, timeout: 5, ...fields }, "backends[0]"), {});
  return closeAfterTest(
    httpBackendFactory.create("remote", options, { env: {}, logger, responseBudget: new ResponseBudget(1 << 20) }),
  );
}

function call(): BackendCall {
  return {
    request: { messages: [{ role: "user", content: "Hi" }] },
    prompt: "Hi",
    requestId: "r-1",
    signal: new AbortController().signal,
  };
}

const event = (content: string) =>
  `data: ${JSON.stringify({ choices: [{ index: 0, delta: { content }, finish_reason: null }] })}\n\n`;

async function contentOf(stream: AsyncIterable<StreamEvent>): Promise<string> {
  let text = "";
  for await (const part of stream) if (typeof part.delta?.content === "string") text += part.delta.content;
  return text;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("http backend streams: the upstream connection", () => {
  it("is kept after [DONE]: streams one after another share one connection", async () => {
    const sockets = new Set<Socket>();
    const server = await upstream((req, res) => {
      sockets.add(req.socket);
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.write(event("Hel"));
      // [DONE] and the end of the body in separate writes, as real servers often send them.
      setTimeout(() => {
        res.write(`${event("lo")}data: [DONE]\n\n`);
        setTimeout(() => res.end(), 20);
      }, 10);
    });
    const backend = backendOn(server.url);
    for (let round = 0; round < 3; round++) {
      expect(await contentOf(backend.stream(call()))).toBe("Hello");
      // The body's end follows [DONE] by 20 ms: a request sent before it would need a second connection.
      await sleep(100);
    }
    expect(sockets.size).toBe(1);
  });

  it("is cut when the upstream goes on sending after [DONE], and the stream has ended already", async () => {
    let closed = false;
    let keepSending: NodeJS.Timeout | undefined;
    const server = await upstream((_req, res) => {
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.write(`${event("Hi")}data: [DONE]\n\n`);
      keepSending = setInterval(() => res.write(": still here\n\n"), 20);
      res.once("close", () => {
        closed = true;
        clearInterval(keepSending);
      });
    });
    try {
      expect(await contentOf(backendOn(server.url).stream(call()))).toBe("Hi");
      await eventually(
        "the upstream connection closed",
        () => Promise.resolve(closed),
        (done) => done,
        { timeoutMs: 4000 },
      );
    } finally {
      clearInterval(keepSending);
    }
  });

  it("stops being read while nobody takes the events, instead of buffering the upstream's flood", async () => {
    let written = 0;
    const limit = 64 * 1024 * 1024;
    const chunk = event("x".repeat(4000)).repeat(16);
    const server = await upstream((_req, res: ServerResponse) => {
      res.writeHead(200, { "content-type": "text/event-stream" });
      const pump = () => {
        while (written < limit && !res.destroyed) {
          written += chunk.length;
          if (!res.write(chunk)) {
            res.once("drain", pump);
            return;
          }
        }
      };
      pump();
    });
    const events = backendOn(server.url).stream(call())[Symbol.asyncIterator]();
    expect((await events.next()).done).toBe(false);
    await sleep(500);
    // The kernel's socket buffers hold a few MB; without backpressure all 64 MB would have been taken.
    expect(written).toBeLessThan(limit / 2);
    await events.return?.();
  });
});

describe("http backend streams: timeouts", () => {
  it("once started, a stall is bounded by idle_timeout, not by what is left of timeout", async () => {
    const server = await upstream((_req, res) => {
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.write(event("Hi"));
    });
    const started = performance.now();
    const error = await failure(contentOf(backendOn(server.url, { timeout: 30, idle_timeout: 0.3 }).stream(call())));
    expect(error).toBeInstanceOf(UpstreamTimeoutError);
    expect((error as Error).message).toContain("sent no stream event");
    expect(performance.now() - started).toBeLessThan(10_000);
  });

  it("does not cut a stream whose events keep coming, however long it lasts in all", async () => {
    const server = await upstream((_req, res) => {
      res.writeHead(200, { "content-type": "text/event-stream" });
      let sent = 0;
      const next = setInterval(() => {
        if (++sent <= 12) res.write(event("w"));
        else {
          clearInterval(next);
          res.end("data: [DONE]\n\n");
        }
      }, 100);
      res.once("close", () => clearInterval(next));
    });
    // 1.3 s in all against an idle timeout of 0.35 s: only the silences count.
    expect(await contentOf(backendOn(server.url, { timeout: 5, idle_timeout: 0.35 }).stream(call()))).toBe(
      "w".repeat(12),
    );
  });
});

describe("StreamExchange: what its sink hears", () => {
  it("nothing after the sink finished it, even when the whole answer came before the relay started", async () => {
    const server = await upstream((_req, res) => {
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.end(`${event("Hi")}data: [DONE]\n\ndata: after the end\n\n`);
    });
    const pool = closeAfterTest(new Pool(server.url));
    const budget = new ResponseBudget(1 << 20);
    const exchange = StreamExchange.open(
      pool,
      { method: "POST", path: "/", body: "{}" },
      new AbortController().signal,
      1 << 20,
      () => new AnswerAllowance(budget, 1 << 20, "remote"),
    );
    await exchange.head();
    // The whole answer is in (its body ended) before the sink is given, as a short answer's often is.
    await exchange.text();
    const heard: string[] = [];
    exchange.relay({
      event: (sse) => {
        heard.push(sse.data);
        if (sse.data === "[DONE]") exchange.finish();
        return true;
      },
      end: () => heard.push("end"),
      fail: (error) => heard.push(`fail: ${error.message}`),
    });
    expect(heard).toHaveLength(2);
    expect(heard[1]).toBe("[DONE]");
  });
});

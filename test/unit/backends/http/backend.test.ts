import type { ServerResponse } from "node:http";
import type { Backend, BackendCall } from "../../../../gateway/src/backends/backend";
import { httpBackendFactory } from "../../../../gateway/src/backends/http/factory";
import { ResponseBudget } from "../../../../gateway/src/backends/response-budget";
import { ConfigFields } from "../../../../gateway/src/config/fields";
import {
  ClientClosedError,
  GatewayError,
  ResponseBudgetExhaustedError,
  UpstreamInvalidResponseError,
} from "../../../../gateway/src/errors";
import { createLogger } from "../../../../gateway/src/observability/logger";
import { judge } from "../../../../gateway/src/services/resilience";
import { type RunningMock, startMock, userMessage } from "../../../support/servers";
import { closeAfterTest, closeOpened, failure, upstream } from "./upstream";

afterEach(closeOpened);

const logger = createLogger({ level: "error", service: "test" });
const context = { env: {}, logger, responseBudget: new ResponseBudget(1024 * 1024) };

let mock: RunningMock;
let backend: Backend;

beforeAll(async () => {
  mock = await startMock();
  const options = httpBackendFactory.parseOptions(ConfigFields.from({ url: mock.url, timeout: 5 }, "backends[0]"), {});
  backend = httpBackendFactory.create("remote", options, context);
});

afterAll(async () => {
  await backend.close();
  await mock.close();
});

function call(extra: Record<string, unknown>, signal = new AbortController().signal): BackendCall {
  return { request: { messages: userMessage("Hello"), ...extra }, prompt: "Hello", requestId: "r-1", signal };
}

describe("http backend: a payload that cannot be serialised", () => {
  // A BigInt stands for anything JSON.stringify throws on (a value nested too deep throws RangeError).
  const unserialisable = { seed: 1n };

  it("is the gateway's own error, not the backend's failure, and nothing is sent (complete)", async () => {
    const before = mock.seen.length;
    const error: unknown = await backend.complete(call(unserialisable)).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(TypeError);
    expect(error).not.toBeInstanceOf(GatewayError);
    expect(judge(error)).toEqual({ retry: false, fallBack: false, health: "neutral" });
    expect(mock.seen.length).toBe(before);
  });

  it("is the gateway's own error, not the backend's failure, and nothing is sent (stream)", async () => {
    const before = mock.seen.length;
    const iterator = backend.stream(call(unserialisable))[Symbol.asyncIterator]();
    const error: unknown = await iterator.next().catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(TypeError);
    expect(judge(error).health).toBe("neutral");
    expect(mock.seen.length).toBe(before);
  });

  it("a serialisable payload still goes out (the control)", async () => {
    const result = await backend.complete(call({ seed: 1 }));
    expect(result.message.content).toBe("Remote: Hello");
  });
});

/** A completion body of about `bytes` bytes. */
function answerOf(bytes: number): string {
  return JSON.stringify({
    choices: [{ index: 0, message: { role: "assistant", content: "z".repeat(bytes) }, finish_reason: "stop" }],
  });
}

/** An http backend on `url` with these YAML fields, and its own budget of `budgetBytes`. */
function backendOn(
  url: string,
  budgetBytes: number,
  fields: Record<string, unknown> = {},
): { backend: Backend; budget: ResponseBudget } {
  const budget = new ResponseBudget(budgetBytes);
  const options = httpBackendFactory.parseOptions(ConfigFields.from({ url, timeout: 5, ...fields }, "backends[0]"), {});
  const backend = httpBackendFactory.create("remote", options, { env: {}, logger, responseBudget: budget });
  return { backend: closeAfterTest(backend), budget };
}

describe("http backend: answers read whole are bounded", () => {
  it("refuses an answer over max_response_bytes that declares no length, and releases its bytes", async () => {
    const server = await upstream((_req, res) => {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(answerOf(5000));
    });
    const { backend, budget } = backendOn(server.url, 1024 * 1024, { max_response_bytes: 4096 });
    const error = await failure(backend.complete(call({})));
    expect(error).toBeInstanceOf(UpstreamInvalidResponseError);
    expect((error as Error).message).toContain("larger than 4096 bytes");
    expect(budget.usedBytes).toBe(0);
  });

  it("refuses an answer whose content-length is over max_response_bytes before reading it", async () => {
    const body = answerOf(5000);
    const server = await upstream((_req, res) => {
      res.writeHead(200, { "content-type": "application/json", "content-length": String(Buffer.byteLength(body)) });
      // Headers only, no body ever: only the declared length can tell the answer is too large.
      res.flushHeaders();
    });
    const { backend, budget } = backendOn(server.url, 1024 * 1024, { max_response_bytes: 4096 });
    expect(await failure(backend.complete(call({})))).toBeInstanceOf(UpstreamInvalidResponseError);
    expect(budget.usedBytes).toBe(0);
  });

  it("of two concurrent answers that do not fit the budget together, one gets 503 and is not the backend's fault", async () => {
    const body = answerOf(6000);
    const held: ServerResponse[] = [];
    // Each answer's headers (with its length) go out at once; the bodies are held until one call has failed.
    const server = await upstream((_req, res) => {
      res.writeHead(200, { "content-type": "application/json", "content-length": String(Buffer.byteLength(body)) });
      res.flushHeaders();
      held.push(res);
    });
    const { backend, budget } = backendOn(server.url, 10_000);
    const calls = [backend.complete(call({})), backend.complete(call({}))];
    const first = await Promise.race(
      calls.map((pending) =>
        pending.then(
          () => "answered",
          () => "failed",
        ),
      ),
    );
    expect(first).toBe("failed");
    for (const waiting of held) waiting.end(body);
    const results = await Promise.allSettled(calls);
    const rejected = results.filter((result): result is PromiseRejectedResult => result.status === "rejected");
    expect(results.filter((result) => result.status === "fulfilled")).toHaveLength(1);
    expect(rejected).toHaveLength(1);
    const error: unknown = rejected[0]?.reason;
    expect(error).toBeInstanceOf(ResponseBudgetExhaustedError);
    expect(error).toMatchObject({ status: 503, code: "response_budget_exhausted", headers: { "retry-after": "1" } });
    // Not counted against the backend, not retried, not sent to a fallback.
    expect(judge(error)).toEqual({ retry: false, fallBack: false, health: "neutral" });
    expect(budget.usedBytes).toBe(0);
  });

  it("reserves bytes as they arrive when no length is declared, and gives them all back", async () => {
    const server = await upstream((_req, res) => {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(answerOf(20_000));
    });
    const { backend, budget } = backendOn(server.url, 8192);
    expect(await failure(backend.complete(call({})))).toBeInstanceOf(ResponseBudgetExhaustedError);
    expect(budget.usedBytes).toBe(0);
  });

  it("gives the bytes back when the client leaves in the middle of an answer", async () => {
    let sent: () => void = () => undefined;
    const halfSent = new Promise<void>((resolve) => (sent = resolve));
    const server = await upstream((_req, res) => {
      res.writeHead(200, { "content-type": "application/json" });
      res.write("x".repeat(3000), () => sent());
    });
    const { backend, budget } = backendOn(server.url, 1024 * 1024);
    const client = new AbortController();
    const pending = failure(backend.complete(call({}, client.signal)));
    await halfSent;
    for (let i = 0; i < 100 && budget.usedBytes === 0; i++) await new Promise((resolve) => setTimeout(resolve, 10));
    expect(budget.usedBytes).toBeGreaterThan(0);
    client.abort();
    expect(await pending).toBeInstanceOf(ClientClosedError);
    expect(budget.usedBytes).toBe(0);
  });

  it("bounds a non-SSE answer to a stream request by max_response_bytes too", async () => {
    const server = await upstream((_req, res) => {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(answerOf(5000));
    });
    const { backend, budget } = backendOn(server.url, 1024 * 1024, { max_response_bytes: 4096 });
    const error = await failure(backend.stream(call({}))[Symbol.asyncIterator]().next());
    expect(error).toBeInstanceOf(UpstreamInvalidResponseError);
    expect((error as Error).message).toContain("larger than 4096 bytes");
    expect(budget.usedBytes).toBe(0);
  });

  it("does not cut a stream by its total size: only one event is bounded", async () => {
    const event = `data: ${JSON.stringify({ choices: [{ index: 0, delta: { content: "w".repeat(200) }, finish_reason: null }] })}\n\n`;
    const events = 5000;
    const server = await upstream((_req, res) => {
      res.writeHead(200, { "content-type": "text/event-stream" });
      for (let index = 0; index < events; index++) res.write(event);
      res.end("data: [DONE]\n\n");
    });
    // About 1.1 MB in all, against 4 KiB per answer read whole and a 4 KiB budget.
    const { backend, budget } = backendOn(server.url, 4096, { max_response_bytes: 4096, max_event_bytes: 4096 });
    let content = 0;
    for await (const part of backend.stream(call({})))
      content += typeof part.delta?.content === "string" ? part.delta.content.length : 0;
    expect(content).toBe(events * 200);
    expect(budget.usedBytes).toBe(0);
  });
});

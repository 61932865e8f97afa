import { connect, type Socket } from "node:net";
import { brotliCompressSync, deflateSync, gzipSync } from "node:zlib";
import { total } from "../support/exposition";
import { scrape } from "../support/metrics";
import {
  chat,
  type RunningGateway,
  type RunningMock,
  startGateway,
  startMock,
  twoBackendConfig,
  userMessage,
} from "../support/servers";

/**
 * What a client can do to the gateway with the request alone: bodies built to break it, bodies that never
 * finish arriving. None of it may cost another client anything, or count against a backend.
 */

let mock: RunningMock;
const gateways: RunningGateway[] = [];

beforeAll(async () => {
  mock = await startMock();
});

afterAll(async () => {
  await Promise.all(gateways.map((gateway) => gateway.close()));
  await mock.close();
});

async function gatewayWith(yaml: string, options: { bodyTimeoutSeconds?: number } = {}): Promise<RunningGateway> {
  const gateway = await startGateway(yaml, options);
  gateways.push(gateway);
  return gateway;
}

/** `{"messages": [...], "extra": [[[...]]]}`, the whole body nested `depth` levels deep. */
function nestedBody(depth: number): string {
  const extra = `${"[".repeat(depth - 1)}${"]".repeat(depth - 1)}`;
  return `{"model":"remote","messages":[{"role":"user","content":"deep"}],"extra":${extra}}`;
}

function post(gateway: RunningGateway, body: Buffer | string, headers: Record<string, string>): Promise<Response> {
  return fetch(`${gateway.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body,
  });
}

describe("request bodies nested too deep", () => {
  let gateway: RunningGateway;

  beforeAll(async () => {
    gateway = await gatewayWith(
      twoBackendConfig(mock.url, "retries: 2\nfallbacks: [local]\ncircuit_breaker: {failures: 2, cooldown: 60}"),
    );
  });

  it("are the client's 400, never retried, never sent to a fallback, never counted against the backend", async () => {
    const seenBefore = mock.seen.length;
    for (let i = 0; i < 6; i++) {
      const response = await post(gateway, nestedBody(5000), {});
      expect(response.status).toBe(400);
      expect(response.headers.get("x-should-retry")).toBe("false");
      expect(await response.json()).toEqual({
        error: {
          message: expect.stringContaining("deeper than 128"),
          type: "invalid_request_error",
          param: null,
          code: "nesting_too_deep",
        },
      });
    }
    expect(mock.seen.length).toBe(seenBefore);
    // The breaker (two failures) would be open by now had any of them counted.
    const answer = await chat(gateway.url, { model: "remote", messages: userMessage("after") });
    expect(answer.status).toBe(200);
    expect(answer.body).toMatchObject({ backend: "remote" });
    const samples = await scrape(gateway.url);
    expect(total(samples, "gateway_backend_errors_total", { backend: "remote" })).toBe(0);
    expect(total(samples, "gateway_fallbacks_total", {})).toBe(0);
    expect(total(samples, "gateway_backend_up", { backend: "remote" })).toBe(1);
  });

  it("are accepted up to the documented 128 levels", async () => {
    const response = await post(gateway, nestedBody(128), {});
    expect(response.status).toBe(200);
    expect((await post(gateway, nestedBody(129), {})).status).toBe(400);
  });
});

describe("compressed request bodies", () => {
  let gateway: RunningGateway;
  const body = JSON.stringify({ model: "local", messages: userMessage("squeezed") });

  beforeAll(async () => {
    gateway = await gatewayWith(twoBackendConfig(mock.url));
  });

  it.each([
    ["gzip", gzipSync],
    ["deflate", deflateSync],
    ["br", brotliCompressSync],
  ])("are read when they are what %s says", async (encoding, compress) => {
    const response = await post(gateway, compress(Buffer.from(body)), { "content-encoding": encoding });
    expect(response.status).toBe(200);
    expect(await response.json()).toMatchObject({ choices: [{ message: { content: "Echo: squeezed" } }] });
  });

  it.each(["gzip", "deflate", "br"])("are the client's 400 when they are not what %s says", async (encoding) => {
    const response = await post(gateway, Buffer.from("this is not compressed at all, just text"), {
      "content-encoding": encoding,
    });
    expect(response.status).toBe(400);
    expect(await response.json()).toEqual({
      error: {
        message: `The request body is not valid ${encoding} data.`,
        type: "invalid_request_error",
        param: null,
        code: "invalid_body",
      },
    });
    expect(gateway.logText()).not.toContain('"level":"error"');
  });

  it("get 415 for an encoding the gateway does not decode", async () => {
    const response = await post(gateway, Buffer.from(body), { "content-encoding": "compress" });
    expect(response.status).toBe(415);
    expect(await response.json()).toMatchObject({
      error: { type: "invalid_request_error", code: "unsupported_encoding" },
    });
  });

  it("get 415 for a charset other than UTF-8", async () => {
    const response = await post(gateway, Buffer.from(body), { "content-type": "application/json; charset=latin1" });
    expect(response.status).toBe(415);
    expect(await response.json()).toMatchObject({ error: { code: "unsupported_encoding" } });
  });

  it("are limited after decompression: a small bomb is a 413", async () => {
    const bomb = gzipSync(Buffer.alloc(8 * 1024 * 1024, 0x20));
    expect(bomb.length).toBeLessThan(64 * 1024);
    const response = await post(gateway, bomb, { "content-encoding": "gzip" });
    expect(response.status).toBe(413);
    expect(await response.json()).toMatchObject({ error: { code: "payload_too_large" } });
  });
});

describe("request paths", () => {
  it("that are not valid percent-encoding are a 400 with an OpenAI body, not a 500", async () => {
    const gateway = await gatewayWith(twoBackendConfig(mock.url));
    const response = await fetch(`${gateway.url}/v1/models/%`);
    expect(response.status).toBe(400);
    expect(await response.json()).toEqual({
      error: {
        message: expect.stringContaining("decode"),
        type: "invalid_request_error",
        param: null,
        code: "invalid_request",
      },
    });
    expect(gateway.logText()).not.toContain('"level":"error"');
  });
});

/** Headers and the start of a body that will never be finished. */
function trickle(port: number, localAddress: string): Promise<Socket> {
  return new Promise((resolveOpen, rejectOpen) => {
    const socket = connect({ port, host: "127.0.0.1", localAddress }, () => {
      socket.write(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
        () => resolveOpen(socket),
      );
    });
    socket.on("error", rejectOpen);
  });
}

describe("request bodies that arrive slowly", () => {
  it("get 408 once BODY_TIMEOUT passes, and their connection is closed", async () => {
    const gateway = await gatewayWith(twoBackendConfig(mock.url), { bodyTimeoutSeconds: 1 });
    const socket = await trickle(gateway.port, "127.0.0.1");
    let reply = "";
    socket.on("data", (chunk: Buffer) => (reply += chunk.toString()));
    await new Promise<void>((resolveClose) => socket.once("close", () => resolveClose()));
    expect(reply).toMatch(/^HTTP\/1\.1 408 /);
    expect(reply.toLowerCase()).toContain("connection: close");
    expect(JSON.parse(reply.slice(reply.indexOf("\r\n\r\n") + 4))).toEqual({
      error: {
        message: "The request body did not arrive within 1 s.",
        type: "invalid_request_error",
        param: null,
        code: "request_timeout",
      },
    });
  });

  it("hold no slot: a thousand trickling sockets leave completions answered", async () => {
    const gateway = await gatewayWith(["max_concurrent_requests: 100", twoBackendConfig(mock.url)].join("\n"), {
      bodyTimeoutSeconds: 60,
    });
    const sockets: Socket[] = [];
    try {
      // From another loopback address than the well-behaved client below, as an attacker would be.
      for (let i = 0; i < 1000; i++) sockets.push(await trickle(gateway.port, "127.0.0.2"));
      await new Promise((resolveWait) => setTimeout(resolveWait, 200));
      const answers = await Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          chat(gateway.url, { model: i % 2 === 0 ? "local" : "remote", messages: userMessage(`ok ${i}`) }),
        ),
      );
      expect(answers.map((answer) => answer.status)).toEqual(Array.from({ length: 20 }, () => 200));
      const samples = await scrape(gateway.url);
      expect(total(samples, "gateway_admitted_requests_in_flight", {})).toBe(0);
      expect(total(samples, "gateway_rejected_requests_total", {})).toBe(0);
      expect(sockets.every((socket) => !socket.destroyed)).toBe(true);
    } finally {
      for (const socket of sockets) socket.destroy();
    }
  });
});
